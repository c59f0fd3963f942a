"""gRPC as the corpus stores it: one definition of its framing, its outcome and its endpoint names.

A gRPC call is an HTTP/2 POST to `/package.Service/Method` with `content-type: application/grpc[+proto]`. Its body
is a sequence of messages, each prefixed by a 1-byte compressed flag and a 4-byte big-endian length (gRPC's
PROTOCOL-HTTP2.md, "Length-Prefixed-Message"). Its outcome is the `grpc-status` trailer, or the same field in the
headers of a trailers-only answer. Bodies are stored framed, as on the wire, so a replay resends them byte for byte;
the sanitizer and the differ split them with `split_messages`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .model import Headers, Response, header_value

CONTENT_TYPE = "application/grpc"
_PREFIX = struct.Struct(">?I")


class GrpcFramingError(ValueError):
    """A body that is not a whole sequence of length-prefixed gRPC messages."""


@dataclass(frozen=True, slots=True)
class GrpcMessage:
    payload: bytes
    compressed: bool = False
    """Set when the sender compressed this message with its `grpc-encoding`; the payload is then not protobuf."""


def is_grpc(headers: Headers) -> bool:
    """True for the headers of a gRPC request or answer (`application/grpc`, `+proto`, `+json`, …)."""
    content_type = (header_value(headers, "content-type") or "").lower()
    return content_type == CONTENT_TYPE or content_type.startswith(CONTENT_TYPE + "+") or content_type.startswith(
        CONTENT_TYPE + ";"
    )


def split_messages(body: bytes) -> list[GrpcMessage]:
    """The messages of a gRPC body, in order; `GrpcFramingError` says where the framing breaks."""
    messages: list[GrpcMessage] = []
    offset = 0
    while offset < len(body):
        if len(body) - offset < _PREFIX.size:
            raise GrpcFramingError(f"gRPC body ends inside a message prefix at byte {offset} of {len(body)}")
        flag = body[offset]
        if flag not in (0, 1):
            raise GrpcFramingError(f"gRPC message at byte {offset} has compressed flag {flag} (only 0 or 1 exist)")
        _, length = _PREFIX.unpack_from(body, offset)
        start = offset + _PREFIX.size
        if start + length > len(body):
            raise GrpcFramingError(
                f"gRPC message at byte {offset} says {length} bytes but only {len(body) - start} follow"
            )
        messages.append(GrpcMessage(body[start : start + length], compressed=bool(flag)))
        offset = start + length
    return messages


def join_messages(messages: list[GrpcMessage]) -> bytes:
    return b"".join(_PREFIX.pack(message.compressed, len(message.payload)) + message.payload for message in messages)


def grpc_status(response: Response) -> int | None:
    """The call's gRPC status code: from the trailers, else from a trailers-only answer's headers; None if absent."""
    value = header_value(response.trailers, "grpc-status")
    if value is None:
        value = header_value(response.headers, "grpc-status")
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def method_name(path: str) -> str | None:
    """`package.Service/Method` for a gRPC path `/package.Service/Method`, else None."""
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == "" and parts[1] and parts[2]:
        return f"{parts[1]}/{parts[2]}"
    return None


def endpoint_name(path: str) -> str:
    """How reports name a gRPC endpoint: `grpc package.Service/Method`."""
    return f"grpc {method_name(path) or path}"


STATUS_NAMES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
    "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)  # fmt: skip
"""gRPC's status codes by number (grpc/doc/statuscodes.md); reports name them rather than print numbers."""

SERVER_ERRORS = frozenset({"UNKNOWN", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "DEADLINE_EXCEEDED"})
"""The codes a server's fault produces, as an HTTP 5xx would: a call newly ending so ranks as critical."""


def status_name(code: int | None) -> str:
    """`NOT_FOUND` for 5; `CODE 42` for a number gRPC does not define; `no grpc-status` for an answer without one."""
    if code is None:
        return "no grpc-status"
    return STATUS_NAMES[code] if 0 <= code < len(STATUS_NAMES) else f"CODE {code}"


def outcome_label(response: Response | None) -> str:
    """How summaries count an answer: its HTTP status (`200`), a gRPC call's status name (`NOT_FOUND`), `error`."""
    if response is None:
        return "error"
    if is_grpc(response.headers):
        return status_name(grpc_status(response))
    return str(response.status)
