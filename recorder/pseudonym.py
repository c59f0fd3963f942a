"""Keyed, shape-keeping pseudonyms: equal secrets map to equal tokens, and a token parses like its secret.

Why keyed HMAC: a plain hash of a short secret (a card number, an email) can be
brute-forced from the corpus; without the key it cannot. Why the same token for
the same value: sessions stay correlated (the user who logged in is the user who
ordered), so a replay still exercises the same code paths.

Why shape-keeping: a service parses what it receives. A token keeps, character
by character, the class of the original (digit → digit, lower → lower, upper →
upper, anything else unchanged), so a number stays a number of the same length
(no leading zero if it had none), a UUID stays a UUID and a JWT stays three
dot-separated base64url parts. Two shapes get more than that: an email becomes
a mapped local part at `example.invalid` (RFC 2606: never deliverable), an IPv4
address becomes an address in 10.0.0.0/8.

The key comes from `REPLAYDIFF_PSEUDONYM_KEY`, a key file, or is random for one
corpus; it is never written anywhere (see `key_from`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import string
from pathlib import Path
from typing import Any

KEY_ENV = "REPLAYDIFF_PSEUDONYM_KEY"
EMAIL_DOMAIN = "example.invalid"

_EMAIL = re.compile(r"([^@\s]+)@[^@\s]+")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_CLASSES = (string.digits, string.ascii_lowercase, string.ascii_uppercase)
_JWT = re.compile(r"(eyJ[A-Za-z0-9_-]+)\.(eyJ[A-Za-z0-9_-]+)\.([A-Za-z0-9_-]*)")
JWT_KEPT_CLAIMS = frozenset(
    {"iss", "aud", "exp", "iat", "nbf", "scope", "scp", "roles", "groups", "typ", "azp", "token_use", "auth_time",
     "amr", "acr", "client_id"}
)
"""Claims that say what a token may do and for how long, not who holds it: kept, so a re-signed token
(`replayer.credentials`, `--jwt-key`) is accepted for the same things. Every other claim is pseudonymized."""


class PseudonymKeyError(ValueError):
    """The pseudonym key file cannot be read or is empty."""


def key_from(key_file: Path | None = None) -> tuple[bytes, str]:
    """The HMAC key and where it came from (`file`, `env` or `random`), for the corpus header."""
    if key_file is not None:
        try:
            key = key_file.read_bytes().strip()
        except OSError as exc:
            raise PseudonymKeyError(f"{key_file}: cannot read the pseudonym key ({exc.strerror})") from None
        if not key:
            raise PseudonymKeyError(f"{key_file}: the pseudonym key file is empty; put at least 16 random bytes in it")
        return key, "file"
    if env := os.environ.get(KEY_ENV):
        return env.encode("utf-8"), "env"
    return os.urandom(32), "random"


class Pseudonymizer:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def token(self, value: str) -> str:
        if jwt := _JWT.fullmatch(value):
            return self._jwt(jwt) or self._mapped(value, value)
        if email := _EMAIL.fullmatch(value):
            return f"{self._mapped(email.group(1), value)}@{EMAIL_DOMAIN}"
        if _IPV4.fullmatch(value):
            stream = self._stream(value, 3)
            return "10." + ".".join(str(byte) for byte in stream)
        return self._mapped(value, value)

    def _jwt(self, parts: re.Match[str]) -> str | None:
        """A JWT stays a decodable JWT of the same header: the holder's claims (`sub`, `email`, …) pseudonymized,
        the others kept, the signature replaced (it no longer verifies; `--jwt-key` re-signs at replay).
        None when the parts are not base64url JSON objects."""
        header, payload = _b64_json(parts.group(1)), _b64_json(parts.group(2))
        if not isinstance(header, dict) or not isinstance(payload, dict):
            return None
        claims = {name: value if name in JWT_KEPT_CLAIMS else self._claim(value) for name, value in payload.items()}
        length = len(parts.group(3)) * 3 // 4  # bytes: the replaced signature is as long and still base64url
        signature = base64.urlsafe_b64encode(self._stream(parts.group(0), length)).rstrip(b"=").decode("ascii")
        return f"{parts.group(1)}.{_b64(claims)}.{signature}"

    def _claim(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.token(value)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int):
            return int(self.token(str(value)))
        if isinstance(value, list):
            return [self._claim(item) for item in value]
        if isinstance(value, dict):
            return {name: self._claim(item) for name, item in value.items()}
        return value

    def _mapped(self, text: str, secret: str) -> str:
        """Each character replaced by one of its own class, drawn from the keyed stream of the whole secret."""
        stream = self._stream(secret, len(text))
        out = []
        for index, (char, byte) in enumerate(zip(text, stream, strict=True)):
            alphabet = next((chars for chars in _CLASSES if char in chars), None)
            if alphabet is None:
                out.append(char)
            elif index == 0 and alphabet is string.digits and char != "0":
                out.append(string.digits[1 + byte % 9])  # keeps a number's length when parsed
            else:
                out.append(alphabet[byte % len(alphabet)])
        return "".join(out)

    def _stream(self, secret: str, length: int) -> bytes:
        blocks = b""
        counter = 0
        while len(blocks) < length:
            message = counter.to_bytes(4, "big") + secret.encode("utf-8", "surrogatepass")
            blocks += hmac.new(self._key, message, hashlib.sha256).digest()
            counter += 1
        return blocks[:length]


def _b64_json(part: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (binascii.Error, ValueError):
        return None


def _b64(document: dict[str, Any]) -> str:
    raw = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
