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

import hashlib
import hmac
import os
import re
import string
from pathlib import Path

KEY_ENV = "REPLAYDIFF_PSEUDONYM_KEY"
EMAIL_DOMAIN = "example.invalid"

_EMAIL = re.compile(r"([^@\s]+)@[^@\s]+")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_CLASSES = (string.digits, string.ascii_lowercase, string.ascii_uppercase)


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
        if email := _EMAIL.fullmatch(value):
            return f"{self._mapped(email.group(1), value)}@{EMAIL_DOMAIN}"
        if _IPV4.fullmatch(value):
            stream = self._stream(value, 3)
            return "10." + ".".join(str(byte) for byte in stream)
        return self._mapped(value, value)

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
