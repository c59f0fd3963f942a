"""Secrets that come back: a value masked anywhere in an exchange is masked wherever it appears again in it.

Services echo what they were sent (error pages, debug and "who am I"
endpoints, validation messages): the response repeats a cookie, a Basic
credential or a password inside a JSON string, URL-encoded in a link, or
base64-encoded in a token. The first pass of the sanitizer replaces the value
where a rule names it; `Echoes` collects those values and what they became,
and a second walk of the whole exchange (`recorder.walk`, the same walker)
replaces every other occurrence, in the encodings values travel in: raw,
URL-encoded, base64 (standard and URL-safe) and JSON-escaped.

Only values of `MIN_ECHO` characters or more are followed: a short value
(`1`, `en`, `dark`) recurs by chance and masking each recurrence would ruin
the bodies a diff compares.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus

from replaydiff.recorder.policy import NamedPlace
from replaydiff.recorder.walk import NO_RULE

MIN_ECHO = 6
"""The shortest masked value whose other occurrences are masked too (a six-character password counts)."""

_T = Any


class Echoes:
    """Masked values of one exchange and what they became; a `Judge` for the walker's second pass."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}
        """Original value → its replacement where a rule fired."""
        self._forms: dict[str, str] | None = None
        self._regex: re.Pattern[str] | None = None
        self.replaced = 0
        """Occurrences the second pass replaced."""

    def add(self, value: Any, replacement: str) -> None:
        """A value a rule replaced (any JSON value: containers give their leaves)."""
        if isinstance(value, str):
            self._add_text(value.strip(), replacement)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            self._add_text(repr(value), replacement)
        elif isinstance(value, list):
            for item in value:
                self.add(item, replacement)
        elif isinstance(value, dict):
            for item in value.values():
                self.add(item, replacement)

    def _add_text(self, value: str, replacement: str) -> None:
        if len(value) < MIN_ECHO or value == replacement or value in self.found:
            return
        self.found[value] = replacement
        self._forms = self._regex = None
        if (decoded := _basic_credentials(value)) is not None:
            # `Basic dXNlcjpzM2NyM3Q=`: an echo may show it decoded, or just the password
            self._add_text(decoded, replacement)
            self._add_text(decoded.partition(":")[2], replacement)

    def update(self, other: dict[str, str]) -> None:
        for value, replacement in other.items():
            self._add_text(value, replacement)

    @property
    def forms(self) -> dict[str, str]:
        """Every encoded form of every value → the same encoding of its replacement."""
        if self._forms is None:
            self._forms = {}
            for value, replacement in self.found.items():
                for encode in _ENCODINGS:
                    form = encode(value)
                    if len(form) >= MIN_ECHO and form not in self._forms:
                        self._forms[form] = encode(replacement)
        return self._forms

    def _pattern(self) -> re.Pattern[str]:
        if self._regex is None:
            # longest first: a value's encoding may contain a shorter value
            alternatives = sorted(self.forms, key=len, reverse=True)
            self._regex = re.compile("|".join(map(re.escape, alternatives)))
        return self._regex

    def occur_in(self, text: str) -> bool:
        return bool(self.found) and self._pattern().search(text) is not None

    # --- the walker's Judge ---------------------------------------------------------------------

    def named(self, place: NamedPlace, name: str, value: Any) -> Any:
        return NO_RULE

    def scan(self, text: str) -> str:
        if not self.found or len(text) < MIN_ECHO:
            return text
        forms = self.forms
        new, count = self._pattern().subn(lambda match: forms[match.group()], text)
        self.replaced += count
        return new

    def json_step(self, path: str, key: str | int) -> str:
        return path

    def may_hide_secrets(self, json_text: str) -> bool:
        return "\\" in json_text or self.occur_in(json_text)

    def scans_number(self, text: str) -> bool:
        return len(text) >= MIN_ECHO

    def dropped_body(self) -> None:
        """The first pass dropped (and counted) every body that does not decode."""

    def unread_grpc_message(self) -> None:
        """The first pass counted every gRPC message it could not read."""

    def remembered(self, key: tuple[str, ...], answer: Callable[[], _T]) -> _T:
        return answer()


def _url(value: str) -> str:
    return quote(value, safe="")


def _url_plus(value: str) -> str:
    return quote_plus(value, safe="")


def _json_escaped(value: str) -> str:
    return json.dumps(value)[1:-1]


def _b64(value: str) -> str:
    return base64.b64encode(value.encode("utf-8")).decode("ascii").rstrip("=")


def _b64url(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii").rstrip("=")


def _raw(value: str) -> str:
    return value


_ENCODINGS: tuple[Callable[[str], str], ...] = (_raw, _url, _url_plus, _json_escaped, _b64, _b64url)

_BASE64 = re.compile(r"[A-Za-z0-9+/=_-]{8,}\Z")


def _basic_credentials(value: str) -> str | None:
    """`user:password` when the value is base64 of one (what follows `Basic`), else None."""
    if not _BASE64.match(value):
        return None
    try:
        altchars = b"-_" if "-" in value or "_" in value else None
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), altchars=altchars)
        text = decoded.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return text if ":" in text and text.isprintable() else None
