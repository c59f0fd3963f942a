"""Convert a finished mitmproxy flow into an `Exchange` (unsanitized: the recorder sanitizes before writing).

What is kept as on the wire and what is normalised:
- headers: ordered pairs with duplicates, exactly as the upstream saw them
  (in reverse mode that includes the rewritten Host);
- request bodies: raw bytes, because a replay must send the same bytes under
  the same Content-Encoding and `Request` has no field to note a decoding;
- response bodies: decoded (gzip, br, deflate, zstd) with `original_encoding`
  noted, so diffs compare content rather than compressor output; a body that
  fails to decode is kept raw and `original_encoding` stays empty;
- HTTP/2: `http_version` is mitmproxy's `HTTP/2.0`; pseudo-headers live in the
  request fields (mitmproxy keeps them out of `headers`), trailers in
  `Response.trailers`. gRPC bodies stay framed as on the wire (gRPC compresses
  per message with `grpc-encoding`, which is left alone), and a cut keeps
  whole messages (`truncated`).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from mitmproxy import http

from replaydiff.corpora import Exchange, Headers, Request, Response, header_value
from replaydiff.corpora.grpc import GrpcFramingError, is_grpc, split_messages

DEFAULT_MAX_BODY = 10 * 1024 * 1024
TRUNCATED_TAG = "truncated"
"""Tag on an exchange whose bodies were cut: `request:SIZE`, `response:SIZE` (original sizes), comma-separated."""


def exchange_from_flow(flow: http.HTTPFlow, *, epoch: float) -> Exchange:
    """`epoch` is the wall-clock start of the first flow the recorder saw; `start_us` counts from it."""
    started = flow.request.timestamp_start
    ended = _end_timestamp(flow)
    tags = {"error": flow.error.msg} if flow.error else {}
    return Exchange(
        id=short_id(flow.id),
        session=short_id(flow.client_conn.id),
        start_us=max(0, round((started - epoch) * 1_000_000)),
        duration_us=max(0, round((ended - started) * 1_000_000)) if ended else 0,
        request=_request(flow.request),
        response=_response(flow.response) if flow.response else None,
        tags=tags,
    )


def truncated(exchange: Exchange, max_body: int) -> Exchange:
    """Bodies cut to `max_body` bytes, with a tag giving the original sizes; applied after sanitizing,
    so a secret is replaced before the cut could split it into a fragment no pattern recognises."""
    request, response = exchange.request, exchange.response
    cut = []
    if len(request.body) > max_body:
        cut.append(f"request:{len(request.body)}")
        request = replace(request, body=_cut(request.body, request.headers, max_body))
    if response is not None and len(response.body) > max_body:
        cut.append(f"response:{len(response.body)}")
        digest = "sha256:" + hashlib.sha256(response.body).hexdigest()  # of the sanitized body, as stored
        size = len(response.body)
        body = _cut(response.body, response.headers, max_body)
        response = replace(response, body=body, body_size=size, body_digest=digest)
    if not cut:
        return exchange
    tags = {**exchange.tags, TRUNCATED_TAG: ",".join(cut)}
    return replace(exchange, request=request, response=response, tags=tags)


def _cut(body: bytes, headers: Headers, max_body: int) -> bytes:
    """The first `max_body` bytes; of a gRPC body, the whole messages that fit, so what is kept still splits."""
    if not is_grpc(headers):
        return body[:max_body]
    try:
        messages = split_messages(body)
    except GrpcFramingError:
        return body[:max_body]  # not framed to begin with: nothing to keep whole
    end = 0
    for message in messages:
        size = 5 + len(message.payload)  # the 5-byte length prefix, then the message
        if end + size > max_body:
            break
        end += size
    return body[:end]


def short_id(uuid: str) -> str:
    """mitmproxy ids are uuid4: 12 hex digits are unique enough within one corpus and easier to read."""
    return uuid.replace("-", "")[:12]


def _end_timestamp(flow: http.HTTPFlow) -> float | None:
    if flow.response and flow.response.timestamp_end:
        return flow.response.timestamp_end
    return flow.error.timestamp if flow.error else None


def _request(request: http.Request) -> Request:
    path, _, query = header_text(request.data.path).partition("?")
    return Request(
        method=request.method,
        scheme=request.scheme,
        host=request.host,
        port=request.port,
        path=path,
        query=query,
        http_version=request.http_version,
        headers=_headers(request.headers),
        body=request.raw_content or b"",
    )


def _response(response: http.Response) -> Response:
    headers = _headers(response.headers)
    body, original_encoding = _decoded_body(response, headers)
    return Response(
        status=response.status_code,
        reason=response.reason,
        http_version=response.http_version,
        headers=headers,
        body=body,
        original_encoding=original_encoding,
        trailers=_headers(response.trailers) if response.trailers else [],
    )


def _decoded_body(response: http.Response, headers: Headers) -> tuple[bytes, str | None]:
    """`headers` are the response's, converted already: cheaper to search than mitmproxy's multidict."""
    raw = response.raw_content or b""
    if not raw:
        return raw, None
    encoding = (header_value(headers, "content-encoding") or "").strip().lower()
    if encoding in ("", "identity"):
        return raw, None
    try:
        return response.get_content(strict=True) or b"", encoding
    except ValueError:
        return raw, None


def _headers(headers: http.Headers) -> Headers:
    """All fields decoded as UTF-8 in one go (the usual case), else field by field with `header_text`."""
    fields = headers.fields
    try:
        return [(name.decode("utf-8"), value.decode("utf-8")) for name, value in fields]
    except UnicodeDecodeError:
        return [(header_text(name), header_text(value)) for name, value in fields]


def header_text(raw: bytes) -> str:
    """Header bytes are ASCII in practice; UTF-8 next, and Latin-1 so that any byte survives as a character."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
