"""HTTP/2 exchanges out of the two reassembled byte streams of a cleartext connection (for pcap import).

A passive reader, unlike `h2.connection.H2Connection`: that one is an endpoint, enforcing flow-control windows
and stream states a capture only shows one side of the negotiation for (a mirror of the server never sent the
WINDOW_UPDATEs the real one did, so it would refuse the client's data). Here frames are cut with `hyperframe`, header
blocks decoded with `hpack` (one decoder per direction, as each peer keeps its own table), and each stream's frames
gathered: request headers, body and trailers from the client, response headers (interim 1xx skipped), body and
trailers from the server. Pure functions over bytes, like `recorder.http1`: a stream that breaks off ends the parse
with a reason (a fixed text per kind, so the import's notes count them by kind); every exchange before it is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hpack import Decoder
from hpack.exceptions import HPACKError
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, RstStreamFrame

from replaydiff.corpora import Headers
from replaydiff.recorder.capture import header_text

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""What a client sends first on a cleartext HTTP/2 connection with prior knowledge (RFC 9113 3.4)."""
_FRAME_HEADER = 9
_UNLIMITED = 2**32


def starts_like_http2(client_data: bytes) -> bool:
    return client_data.startswith(PREFACE)


@dataclass(slots=True)
class Half:
    """What one side sent on one stream."""

    headers: Headers = field(default_factory=list)
    """Pseudo-headers (`:method`, `:status`…) first, as sent."""
    body: bytearray = field(default_factory=bytearray)
    trailers: Headers = field(default_factory=list)
    ended: bool = False
    first_byte: int = -1
    """Offsets in the side's byte stream, for the packet timestamps."""
    end: int = 0

    def pseudo(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)

    @property
    def fields(self) -> Headers:
        return [(key, value) for key, value in self.headers if not key.startswith(":")]


@dataclass(slots=True)
class Stream:
    id: int
    request: Half = field(default_factory=Half)
    response: Half = field(default_factory=Half)
    reset: int | None = None
    """The RST_STREAM error code, when either side reset the stream."""


def parse_streams(client_data: bytes, server_data: bytes) -> tuple[list[Stream], str | None]:
    """The client-initiated streams that carried a request, in stream order, and why reading stopped early
    (None if both sides were read to their end)."""
    streams: dict[int, Stream] = {}
    problem = _read_side(client_data, len(PREFACE), streams, from_client=True)
    server_problem = _read_side(server_data, 0, streams, from_client=False)
    requests = [stream for _, stream in sorted(streams.items()) if stream.request.headers]
    return requests, problem or server_problem


def _read_side(data: bytes, offset: int, streams: dict[int, Stream], *, from_client: bool) -> str | None:
    decoder = Decoder()
    decoder.max_allowed_table_size = _UNLIMITED  # the peer's SETTINGS said how large; a reader accepts any
    decoder.max_header_list_size = _UNLIMITED
    block = bytearray()
    block_frame: HeadersFrame | None = None
    block_start = 0
    view = memoryview(data)
    while offset < len(data):
        if len(data) - offset < _FRAME_HEADER:
            return "HTTP/2 stream ends inside a frame header"
        try:
            frame, length = Frame.parse_frame_header(view[offset : offset + _FRAME_HEADER])
        except HyperframeError:
            return "HTTP/2 frame header does not read"
        start, offset = offset, offset + _FRAME_HEADER + length
        if offset > len(data):
            return "HTTP/2 stream ends inside a frame"
        try:
            frame.parse_body(view[start + _FRAME_HEADER : offset])
        except HyperframeError:
            return "HTTP/2 frame does not read"
        if frame.stream_id and frame.stream_id % 2 == 0:
            continue  # server push: not something a client asked for
        if isinstance(frame, HeadersFrame):
            block, block_frame, block_start = bytearray(frame.data), frame, start
        elif isinstance(frame, ContinuationFrame) and block_frame is not None:
            block += frame.data
        elif isinstance(frame, DataFrame):
            half = _half(streams, frame.stream_id, from_client)
            half.body += frame.data
            _ended(half, frame, start, offset)
            continue
        elif isinstance(frame, RstStreamFrame):
            streams.setdefault(frame.stream_id, Stream(frame.stream_id)).reset = frame.error_code
            continue
        elif isinstance(frame, GoAwayFrame):
            return None
        else:
            continue  # SETTINGS, PING, WINDOW_UPDATE, PRIORITY: connection bookkeeping
        if "END_HEADERS" not in frame.flags:
            continue
        assert block_frame is not None
        try:
            headers = [(header_text(name), header_text(value)) for name, value in decoder.decode(bytes(block), raw=True)]
        except HPACKError:
            return "HTTP/2 header block does not decode"
        half = _half(streams, block_frame.stream_id, from_client)
        _headers(half, headers, block_start)
        _ended(half, block_frame, block_start, offset)
        block_frame = None
    return None


def _half(streams: dict[int, Stream], stream_id: int, from_client: bool) -> Half:
    stream = streams.setdefault(stream_id, Stream(stream_id))
    return stream.request if from_client else stream.response


def _headers(half: Half, headers: Headers, start: int) -> None:
    status = next((value for key, value in headers if key == ":status"), None)
    if status is not None and status.startswith("1"):
        return  # interim answer (100 Continue, 103 Early Hints): the final one follows
    if not half.headers:
        half.headers, half.first_byte = headers, start
    else:
        half.trailers = headers


def _ended(half: Half, frame: Frame, start: int, end: int) -> None:
    if half.first_byte < 0:
        half.first_byte = start
    half.end = end
    if "END_STREAM" in frame.flags:
        half.ended = True
