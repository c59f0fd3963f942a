"""HTTP/1.0 and 1.1 messages out of reassembled TCP byte streams (for pcap import).

Pure functions over bytes: a client stream holds requests back to back
(keep-alive, pipelining), a server stream the responses in the same order.
Bodies are framed by Transfer-Encoding: chunked, Content-Length, or, for a
response, the end of the connection; HEAD requests and 1xx, 204 and 304
responses have none. A message that breaks off (a truncated capture, a gap in
the stream) ends the parse with a reason; everything before it is kept.

Why our own parser rather than scapy's HTTP layer: scapy binds it to ports 80
and 8080 only and dissects packet by packet, while HTTP is found here on any
port by content and parsed once per stream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from replaydiff.corpora import Headers
from replaydiff.recorder.capture import header_text

REQUEST_LINE = re.compile(rb"([A-Z][A-Z-]{0,19}) (\S+) (HTTP/1\.[01])\r?\n")
STATUS_LINE = re.compile(rb"(HTTP/1\.[01]) (\d{3})(?: ([^\r\n]*))?\r?\n")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")
_NO_BODY_STATUSES = frozenset({204, 304})


class Incomplete(ValueError):
    """The stream ends or breaks inside a message; the message says where and why."""


@dataclass(slots=True)
class Message:
    start: tuple[str, ...]
    """(method, target, version) or (version, status, reason)."""
    headers: Headers
    body: bytes
    first_byte: int
    """Offsets in the stream, for the packet timestamps."""
    end: int


def looks_like_requests(data: bytes) -> bool:
    return REQUEST_LINE.match(data) is not None


def looks_like_responses(data: bytes) -> bool:
    return STATUS_LINE.match(data) is not None


def parse_requests(data: bytes) -> tuple[list[Message], str | None]:
    """All complete requests, and why parsing stopped early (None if the stream ended cleanly)."""
    messages: list[Message] = []
    position = 0
    while position < len(data):
        try:
            message = _message(data, position, REQUEST_LINE, has_body=True, until_close=False)
        except Incomplete as exc:
            return messages, str(exc)
        messages.append(message)
        position = message.end
    return messages, None


def parse_responses(data: bytes, methods: list[str]) -> tuple[list[Message], str | None]:
    """Responses to the requests whose methods are given in order; interim 1xx responses are skipped.

    A 101 ends the parse: what follows is another protocol (websocket, h2c).
    """
    messages: list[Message] = []
    position = 0
    while position < len(data):
        status_line = STATUS_LINE.match(data, position)
        status = int(status_line.group(2)) if status_line else 0
        head = len(messages) < len(methods) and methods[len(messages)] == "HEAD"
        has_body = not (head or status < 200 or status in _NO_BODY_STATUSES)
        try:
            message = _message(data, position, STATUS_LINE, has_body=has_body, until_close=True)
        except Incomplete as exc:
            return messages, str(exc)
        position = message.end
        if status == 101:
            messages.append(message)
            return messages, "switched protocols (101): the rest of the connection is not HTTP"
        if status >= 200:
            messages.append(message)
    return messages, None


def _message(
    data: bytes, position: int, start_line: re.Pattern[bytes], *, has_body: bool, until_close: bool
) -> Message:
    """One message at `position`; without a declared length a body runs to the end only if `until_close`."""
    line = start_line.match(data, position)
    if line is None:
        raise Incomplete(f"no HTTP/1.x message at stream offset {position}")
    headers, body_start = _head(data, line.end(), position)
    framing = _framing(headers) if has_body else 0
    if framing == "chunked":
        body, end = _dechunk(data, body_start)
    else:
        end = len(data) if framing is None and until_close else body_start + (framing or 0)
        if end > len(data):
            raise Incomplete(f"body ends past the captured data at stream offset {position}")
        body = data[body_start:end]
    start = tuple(header_text(group or b"") for group in line.groups())
    return Message(start, headers, body, position, end)


def _head(data: bytes, position: int, message_start: int) -> tuple[Headers, int]:
    """The header fields after the start line, and where the body starts."""
    if no_headers := _LINE_END.match(data, position):
        return [], no_headers.end()
    head_end = _HEAD_END.search(data, position)
    if head_end is None:
        raise Incomplete(f"headers end past the captured data at stream offset {message_start}")
    return _headers(data[position : head_end.start()]), head_end.end()


def _framing(headers: Headers) -> str | int | None:
    """`chunked`, a Content-Length, or None when the message declares neither."""
    length = None
    for name, value in headers:
        if len(name) not in (14, 17):  # cheap: only Content-Length and Transfer-Encoding matter
            continue
        lowered = name.lower()
        if lowered == "transfer-encoding" and "chunked" in value.lower():
            return "chunked"
        if lowered == "content-length" and length is None:
            length = value
    if length is None:
        return None
    if not length.strip().isdigit():
        raise Incomplete(f"Content-Length {length!r} is not a number")
    return int(length)


def _headers(block: bytes) -> Headers:
    headers: Headers = []
    for line in header_text(block).split("\n"):
        name, colon, value = line.partition(":")
        if not colon or not name or name[0] in " \t":
            raise Incomplete(f"malformed header line {line[:40]!r}")
        headers.append((name, value.strip(" \t\r")))
    return headers


def _dechunk(data: bytes, position: int) -> tuple[bytes, int]:
    """The body without its chunk framing, and the offset after the trailers."""
    chunks = []
    while True:
        line_end = data.find(b"\n", position)
        if line_end < 0:
            raise Incomplete(f"chunk size line past the captured data at stream offset {position}")
        size_text = data[position:line_end].split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise Incomplete(f"bad chunk size {size_text[:20]!r} at stream offset {position}") from None
        position = line_end + 1
        if size == 0:
            return b"".join(chunks), _trailers_end(data, position)
        if position + size > len(data):
            raise Incomplete(f"chunk past the captured data at stream offset {position}")
        chunks.append(data[position : position + size])
        position += size
        ending = _LINE_END.match(data, position)
        if ending is None:
            raise Incomplete(f"chunk not followed by CRLF at stream offset {position}")
        position = ending.end()


def _trailers_end(data: bytes, position: int) -> int:
    """After the last chunk: optional trailer lines, then an empty line."""
    if ending := _LINE_END.match(data, position):
        return ending.end()
    trailers = _HEAD_END.search(data, position)
    if trailers is None:
        raise Incomplete(f"chunked body ends past the captured data at stream offset {position}")
    return trailers.end()
