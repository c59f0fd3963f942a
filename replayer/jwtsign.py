"""`--jwt-key`: recorded JWTs re-signed with a key the sandbox trusts (PyJWT; RSA and EC keys via cryptography)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from replaydiff.replayer.accounts import CredentialsError

_BEARER_JWT = re.compile(r"^(?P<scheme>[Bb]earer\s+)?(?P<token>eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$")
_DEFAULT_LIFETIME_S = 3600


class JwtSigner:
    """Re-signs recorded JWTs with the sandbox's key: the recorded claims, `iat` now, `exp` as far ahead as
    the recorded token lived (an hour when it did not say). Each token is re-signed once per half lifetime."""

    def __init__(self, key: Any, algorithm: str) -> None:
        self._key = key
        self.algorithm = algorithm
        self._cache: dict[str, tuple[float, str]] = {}

    @classmethod
    def from_file(cls, path: Path) -> JwtSigner:
        """An HS256 secret (any file that is not a PEM key), or an RSA (RS256) or EC (ES256) private key in PEM.
        Signs once here, so a key that cannot sign fails before the replay starts."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CredentialsError(f"{path}: cannot read the JWT key ({exc.strerror})") from None
        if b"-----BEGIN" in data:
            if b"PUBLIC KEY" in data or b"CERTIFICATE" in data:
                raise CredentialsError(
                    f"{path}: is a public key or certificate; --jwt-key needs the private key that signs"
                )
            try:
                key: Any = serialization.load_pem_private_key(data, password=None)
            except (ValueError, TypeError) as exc:
                raise CredentialsError(
                    f"{path}: not a usable private key ({exc}); give an unencrypted PEM RSA or EC key"
                ) from None
            if isinstance(key, rsa.RSAPrivateKey):
                algorithm = "RS256"
            elif isinstance(key, ec.EllipticCurvePrivateKey):
                algorithm = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}.get(key.curve.name, "")
                if not algorithm:
                    raise CredentialsError(f"{path}: EC curve {key.curve.name} has no JWT algorithm; use P-256")
            else:
                name = type(key).__name__
                raise CredentialsError(f"{path}: a {name} cannot sign JWTs; give an RSA or EC private key")
        else:
            key, algorithm = data.strip(), "HS256"
            if not key:
                raise CredentialsError(f"{path}: the JWT key file is empty; put the HS256 secret in it")
        signer = cls(key, algorithm)
        try:
            jwt.encode({"probe": 1}, key, algorithm=algorithm)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise CredentialsError(f"{path}: cannot sign a JWT with this key ({exc})") from None
        return signer

    def resign_header(self, value: str) -> str:
        match = _BEARER_JWT.match(value.strip())
        if not match:
            return value
        return (match.group("scheme") or "") + self.resign(match.group("token"))

    def resign(self, token: str, *, now: float | None = None) -> str:
        now = time.time() if now is None else now
        cached = self._cache.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return token  # not a JWT after all: sent as recorded
        lifetime = _lifetime(claims)
        claims["iat"] = int(now)
        if "nbf" in claims:
            claims["nbf"] = int(now)
        claims["exp"] = int(now + lifetime)
        extra = {name: value for name, value in header.items() if name not in ("alg", "typ")}
        signed = jwt.encode(claims, self._key, algorithm=self.algorithm, headers=extra or None)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (now + lifetime / 2, signed)
        return signed


def _lifetime(claims: Mapping[str, Any]) -> float:
    exp, iat = claims.get("exp"), claims.get("iat")
    if isinstance(exp, (int, float)) and isinstance(iat, (int, float)) and exp > iat:
        return float(exp - iat)
    return float(_DEFAULT_LIFETIME_S)

