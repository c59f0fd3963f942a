"""Short, JSON-able representations of compared values.

A divergence carries the two values a person needs to see, not the payloads
they came from: a report stays readable and a JSON report of a large replay
stays small. Every representation is a string, so `1` and `"1"` (a type
change) still look different side by side.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

MAX_CHARS = 120
BODY_CHARS = 4000
"""A whole body as the HTML report shows it beside the other: a screenful, not a payload."""
_CONTEXT_BEFORE = 30
"""Characters shown before the first difference of two text bodies, so the reader sees where it is."""


def clip(text: str, limit: int = MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def json_value(value: Any) -> str:
    """A parsed JSON value as compact JSON text."""
    return clip(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def body_excerpts(left: bytes, right: bytes) -> tuple[str, str]:
    """Excerpts of two differing non-JSON bodies, both starting just before their first difference.

    A prefix of two long pages that differ near the end would show two equal
    strings; a window at the first difference shows what changed.
    """
    start = max(0, _common_prefix(left, right) - _CONTEXT_BEFORE)
    return _excerpt(left, start), _excerpt(right, start)


def _common_prefix(left: bytes, right: bytes) -> int:
    for index, (a, b) in enumerate(zip(left, right, strict=False)):
        if a != b:
            return index
    return min(len(left), len(right))


def _excerpt(body: bytes, start: int) -> str:
    if not body:
        return "<empty>"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(body)} bytes, sha256 {hashlib.sha256(body).hexdigest()[:12]}>"
    # `start` counts bytes; re-decoding the tail keeps a multi-byte character whole.
    window = body[start:].decode("utf-8", errors="ignore") if start else text
    return clip(("…" if start else "") + window)


SHOWN_HEADERS = 60
"""Headers of an answer shown for reading; the rest are counted. Bounds every example whatever a target sent
(10,000 headers made each example of a report megabytes, and building it cost per header per divergence)."""


def response_text(status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> str:
    """An answer for reading, as on the wire: status line, headers, blank line, body; bounded in size."""
    shown = [clip(f"{name}: {value}", 2 * MAX_CHARS) for name, value in headers[:SHOWN_HEADERS]]
    if len(headers) > SHOWN_HEADERS:
        shown.append(f"… and {len(headers) - SHOWN_HEADERS} more headers")
    head = "\n".join([clip(f"{status} {reason}".rstrip()), *shown])
    return f"{head}\n\n{body_text(body)}"


def body_text(body: bytes, limit: int = BODY_CHARS) -> str:
    """A body for reading: JSON indented (keys in their order), other text as is, binary summarized."""
    if not body:
        return "<empty>"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _excerpt(body, 0)
    try:
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        pass  # not JSON: shown as sent
    return clip(text, limit)
