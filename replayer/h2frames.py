"""HTTP/2 frames (RFC 9113 section 4 and 6) as bytes: the type and flag numbers, the 9-byte frame header, and the
few control frames a client sends.

Why hand-written rather than hyperframe/h2: those build an object per frame
and run a state machine and an event per step, about 50-75 µs of CPU per
replayed request (cProfile, bench/README.md), most of an HTTP/2 request's
cost. Here a frame header is one integer turned into 9 bytes, and a frame
read is one `struct` unpack over the connection's buffer (`http2.H2Session`).
"""

from __future__ import annotations

import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""What a client sends first, before its SETTINGS."""

# frame types
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# flags
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# settings
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6

# error codes
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
CANCEL = 0x8

ERROR_NAMES = {
    0x0: "NO_ERROR", 0x1: "PROTOCOL_ERROR", 0x2: "INTERNAL_ERROR", 0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT", 0x5: "STREAM_CLOSED", 0x6: "FRAME_SIZE_ERROR", 0x7: "REFUSED_STREAM", 0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR", 0xA: "CONNECT_ERROR", 0xB: "ENHANCE_YOUR_CALM", 0xC: "INADEQUATE_SECURITY",
    0xD: "HTTP_1_1_REQUIRED",
}  # fmt: skip

DEFAULT_WINDOW = 65_535
"""Every flow-control window before SETTINGS or WINDOW_UPDATE say otherwise."""

DEFAULT_MAX_FRAME = 16_384
"""The largest frame payload until the peer allows more; we never allow more, so it bounds what we read too."""

MAX_WINDOW = 2**31 - 1

FRAME_HEADER = struct.Struct(">IBL")
"""length (24 bits) and type (8) as one integer, flags, then the reserved bit and the stream id."""


def frame_header(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    return (length << 48 | kind << 40 | flags << 32 | stream_id).to_bytes(9, "big")


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return frame_header(len(payload), kind, flags, stream_id) + payload


def settings(values: dict[int, int]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(struct.pack(">HL", key, value) for key, value in values.items()))


SETTINGS_ACK = frame(SETTINGS, ACK, 0)


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, increment.to_bytes(4, "big"))


def rst_stream(stream_id: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream_id, code.to_bytes(4, "big"))


def goaway(last_stream_id: int, code: int) -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack(">LL", last_stream_id, code))


def code_name(code: int) -> str:
    """An error code as RFC 9113 names it (RST_STREAM's, GOAWAY's)."""
    return ERROR_NAMES.get(code) or f"error code {code:#x}"
