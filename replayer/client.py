"""Send one recorded request to one target and observe exactly what happened.

Each target has its own connection pool, so a slow candidate cannot delay the
baseline's requests. The request goes out as recorded: the path and query
exactly as they were on the wire, the recorded headers (no client defaults
added), the recorded body. Redirects are never followed: a 3xx is itself an
answer to compare. Failures become `Attempt`s with an error kind; nothing a
target does can crash the replay.

Why our own lean HTTP/1.1 client (`replayer.http1`) rather than aiohttp or
httpx: per request, httpx spent its time in pool bookkeeping and aiohttp in
URL and header generality that an exact replay never uses; see bench/README.md.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from urllib.parse import urlsplit

from replaydiff.corpora import HOP_BY_HOP, Attempt, Headers, Request, Response
from replaydiff.corpora.content import decoded_content
from replaydiff.corpora.grpc import is_grpc
from replaydiff.corpora.model import ErrorKind
from replaydiff.replayer.aiopool import ConnectionPool
from replaydiff.replayer.h2pool import Http2Pool
from replaydiff.replayer.http1 import (
    IDEMPOTENT_METHODS,
    ConnectFailed,
    ConnectTimeout,
    HttpClientError,
    Origin,
    ProtocolViolation,
    RawAnswer,
    ReadTimeout,
    StaleConnection,
)
from replaydiff.replayer.http2 import is_http2
from replaydiff.replayer.targets import Target

# Headers that describe one hop's connection or are recomputed by the client for the body it sends.
_NOT_FORWARDED = HOP_BY_HOP | {"content-length"}
# Methods whose empty body is still announced with `Content-Length: 0`, as every common client does.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

MAX_BODY = 10 * 1024 * 1024
HTTP2_CONNECTIONS = 4
"""HTTP/2 connections per target at most: each carries as many streams as the target allows (often 100 or
more), so a few carry any replay's concurrency; more than one, so one slow connection is not every stream's."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float = 5.0
    read_s: float = 30.0
    """The longest wait for a whole answer, headers and body, from when the request left."""


@dataclass(frozen=True, slots=True)
class TLSOptions:
    ca_file: str | None = None
    insecure: bool = False

    def context(self, alpn: list[str] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if alpn:
            context.set_alpn_protocols(alpn)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def outgoing_headers(request: Request, target: Target, extra: Headers = ()) -> Headers:
    """The recorded headers (Host included) plus the target's own and `extra`, which replace same-named ones."""
    added = [*target.headers, *extra]
    overridden = {name.lower() for name, _ in added}
    kept = [
        (name, value)
        for name, value in request.headers
        if name.lower() not in _NOT_FORWARDED and name.lower() not in overridden
    ]
    return kept + added


class UnsendableRequest(HttpClientError):
    """The request itself cannot go on the wire, e.g. a header value with a line break (a fuzzed one)."""


def _error_kind(exc: HttpClientError) -> ErrorKind:
    if isinstance(exc, UnsendableRequest):
        return "other"
    if isinstance(exc, (ReadTimeout, ConnectTimeout)):
        return "timeout"
    if isinstance(exc, ConnectFailed):
        return "refused"
    if isinstance(exc, ProtocolViolation):
        return "protocol"
    return "reset"


def _wire(text: str) -> bytes:
    """Recorded text back to the bytes it came from: Latin-1 keeps any byte; UTF-8 for the rest."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def _header_line(name: str, value: str) -> bytes:
    if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
        raise UnsendableRequest(f"header {name!r} has a line break; not sent")
    return _wire(f"{name}: {value}")


def _field(name: str, value: str) -> tuple[bytes, bytes]:
    """An HTTP/2 header field; a line break is refused as in HTTP/1.1 (no server would take it either)."""
    if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
        raise UnsendableRequest(f"header {name!r} has a line break; not sent")
    try:  # `_wire`, inline: several fields of every request pass here
        return name.encode("latin-1"), value.encode("latin-1")
    except UnicodeEncodeError:
        return _wire(name), _wire(value)


_DEFAULT_PORTS = {"http": 80, "https": 443}
_TE_TRAILERS = (b"te", b"trailers")


def _authority(request: Request) -> str:
    """HTTP/2's `:authority` as recorded: the host, and the port unless it is the scheme's default."""
    if request.port == _DEFAULT_PORTS.get(request.scheme.lower()):
        return request.host
    return f"{request.host}:{request.port}"


@dataclass(frozen=True, slots=True)
class EncodedRequest:
    """The recorded part of a request's bytes, encoded once and shared by every target it goes to."""

    method: str
    method_bytes: bytes
    target: bytes
    """`b"/path?query HTTP/1.1"`: the request line after the method, a space and a target's path prefix."""
    headers: list[tuple[str, bytes]]
    """(lowercased name, whole header line) of the recorded headers a replay forwards."""
    has_host: bool
    body: bytes

    @classmethod
    def shared(cls, request: Request, *, http2: bool = True) -> Sendable:
        """Encoded as it goes out (HTTP/2 header fields when it was recorded in HTTP/2 and `http2` allows it,
        HTTP/1.1 bytes otherwise), or the request itself when it cannot be sent (each target's `begin` then says
        why)."""
        try:
            return EncodedHttp2Request.of(request) if http2 and is_http2(request.http_version) else cls.of(request)
        except UnsendableRequest:
            return request

    @classmethod
    def of(cls, request: Request) -> EncodedRequest:
        method = request.method.upper()
        headers = [
            (name.lower(), _header_line(name, value))
            for name, value in request.headers
            if name.lower() not in _NOT_FORWARDED
        ]
        if is_http2(request.http_version) and not any(lowered == "host" for lowered, _ in headers):
            headers.insert(0, ("host", _header_line("Host", _authority(request))))  # sent in HTTP/1.1 (--http1)
        return cls(
            method, _wire(method), _wire(f"{request.target} HTTP/1.1"), headers,
            any(lowered == "host" for lowered, _ in headers), request.body,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class EncodedHttp2Request:
    """The recorded part of an HTTP/2 request's header fields, encoded once and shared by every target it goes
    to (`TargetCodec.http2_request` adds each target's pseudo-headers and headers)."""

    request: Request
    """As recorded: what a target that is sent HTTP/1.1 (`--http1`) encodes."""
    method: str
    method_bytes: bytes
    path: bytes
    authority: bytes
    """The recorded authority, or the recorded `Host` header's value."""
    fields: list[tuple[str, tuple[bytes, bytes]]]
    """(lowercased name, field) of the recorded headers HTTP/2 forwards, unless a target replaces the name."""
    content_length: bool
    """The recording had a `content-length`: one is sent, for the body sent."""
    needs_te: bool
    """A gRPC call recorded without `te: trailers` (dropped as hop-by-hop): one is added, unless a target sets
    `te` itself."""

    @classmethod
    def of(cls, request: Request) -> EncodedHttp2Request:
        authority = _authority(request)
        fields: list[tuple[str, tuple[bytes, bytes]]] = []
        content_length = False
        for name, value in request.headers:
            lowered = name.lower()
            if lowered == "content-length":
                content_length = True
            elif lowered == "host":
                authority = value  # a corpus that kept Host among the headers: it is HTTP/2's :authority
            elif lowered.startswith(":"):
                continue
            elif lowered not in _NOT_FORWARDED:
                fields.append((lowered, _field(lowered, value)))
            elif lowered == "te" and value.strip().lower() == "trailers":
                fields.append((lowered, _TE_TRAILERS))
        method = request.method.upper()
        needs_te = is_grpc(request.headers) and not any(lowered == "te" for lowered, _ in fields)
        return cls(
            request, method, _wire(method), _field("path", request.target)[1], _field("host", authority)[1], fields,
            content_length, needs_te,
        )  # fmt: skip


Sendable = Request | EncodedRequest | EncodedHttp2Request
"""A request as `TargetClient.begin` takes it: as recorded, or its recorded part encoded once per exchange."""


@dataclass(frozen=True, slots=True)
class PendingAttempt:
    started_ns: int
    wire: bytes
    method: str
    span_id: str
    answer: Awaitable[RawAnswer] | None
    failure: HttpClientError | None
    """Why the request could not be sent at all (then `answer` is None)."""


class TargetCodec:
    """One target's view of requests and answers: the bytes each request goes out as, and what each answer
    (or failure) becomes in the results. Shared by the asyncio client and the locust workers."""

    def __init__(self, target: Target, *, max_body: int = MAX_BODY) -> None:
        self.target = target
        url = urlsplit(target.base_url)
        self.https = url.scheme == "https"
        self.max_body = max_body
        self._path_prefix = _wire(url.path.rstrip("/"))
        self._scheme = _wire(url.scheme)
        self._host_line = _wire(f"Host: {url.netloc.rpartition('@')[2]}")
        # The target's own headers, encoded once: they replace same-named recorded ones on every request.
        self._replaced = frozenset(name.lower() for name, _ in target.headers)
        self._target_lines = [_header_line(name, value) for name, value in target.headers]
        self._target_fields = [_field(name.lower(), value) for name, value in target.headers if name.lower() != "host"]
        hosts = [_field("host", value)[1] for name, value in target.headers if name.lower() == "host"]
        self._target_authority = hosts[-1] if hosts else None
        """A `Host` among the target's headers is HTTP/2's :authority."""

    def origin(self, tls: TLSOptions, *, http2: bool = False) -> Origin:
        """Where to connect; for HTTP/2 over TLS the handshake offers only `h2` (ALPN)."""
        context = tls.context(["h2"] if http2 else None) if self.https else None
        return Origin(self.target.host, self.target.port, context)

    def http2_request(
        self, request: Request | EncodedHttp2Request, extra_headers: Headers
    ) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """The request as HTTP/2 header fields and body: the pseudo-headers from the recorded request (the
        recorded authority, as HTTP/1.1 keeps the recorded Host; this target's scheme and path prefix), the
        recorded headers, then the target's and `extra_headers`, which replace same-named recorded ones.

        HTTP/2 forbids connection-specific headers, so those are not sent, except `te: trailers`, which gRPC
        servers require (and get, for a gRPC call, even when the recording dropped it as hop-by-hop);
        `content-length` is sent, for the body sent, when the recording had one."""
        encoded = request if isinstance(request, EncodedHttp2Request) else EncodedHttp2Request.of(request)
        replaced = self._replaced.union(name.lower() for name, _ in extra_headers) if extra_headers else self._replaced
        fields = [field for lowered, field in encoded.fields if lowered not in replaced]
        authority = self._target_authority or encoded.authority
        fields.extend(self._target_fields)
        for name, value in extra_headers:
            lowered = name.lower()
            if lowered == "host":
                authority = _field("host", value)[1]
            else:
                fields.append(_field(lowered, value))
        body = encoded.request.body
        if encoded.content_length:
            fields.append((b"content-length", b"%d" % len(body)))
        if encoded.needs_te and "te" not in replaced:
            fields.append(_TE_TRAILERS)
        pseudo = [
            (b":method", encoded.method_bytes),
            (b":scheme", self._scheme),
            (b":authority", authority),
            (b":path", self._path_prefix + encoded.path),
        ]
        return pseudo + fields, body

    def wire_request(self, request: Request | EncodedRequest, extra_headers: Headers) -> bytes:
        """The request as bytes: recorded request line and headers, then the target's and `extra_headers`,
        which replace same-named recorded ones (what `outgoing_headers` says, without its per-call set-up)."""
        encoded = request if isinstance(request, EncodedRequest) else EncodedRequest.of(request)
        replaced = self._replaced.union(name.lower() for name, _ in extra_headers)
        lines = [encoded.method_bytes + b" " + self._path_prefix + encoded.target]
        lines.extend(line for lowered, line in encoded.headers if lowered not in replaced)
        lines.extend(self._target_lines)
        lines.extend(_header_line(name, value) for name, value in extra_headers)
        if not encoded.has_host and "host" not in replaced:
            lines.append(self._host_line)
        if encoded.body or encoded.method in _BODY_METHODS:
            lines.append(b"Content-Length: %d" % len(encoded.body))
        lines.append(b"")
        lines.append(encoded.body)
        return b"\r\n".join(lines)

    def outcome(
        self, result: RawAnswer | HttpClientError, *, started_ns: int, epoch_ns: int, span_id: str
    ) -> tuple[Attempt, Response | None]:
        """`epoch_ns` is the replay's start on the perf_counter clock; attempt times are offsets from it."""
        response: Response | None = None
        ttfb_us: int | None = None
        if isinstance(result, HttpClientError):
            error, detail, ended_ns = _error_kind(result), str(result)[:300], result.at_ns
        else:
            error, ended_ns = None, result.done_ns
            ttfb_us = (result.ttfb_ns - started_ns) // 1000 if result.ttfb_ns else None
            response, detail = self._response(result)
        attempt = Attempt(
            sent_us=(started_ns - epoch_ns) // 1000,
            ttfb_us=ttfb_us,
            duration_us=(max(ended_ns, started_ns) - started_ns) // 1000,
            status=response.status if response else None,
            error=error,
            error_detail=detail,
            span_id=span_id,
        )
        return attempt, response

    def _response(self, answer: RawAnswer) -> tuple[Response, str | None]:
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in answer.headers]
        body, original_encoding = bytes(answer.body), None
        answer.body.clear()  # one copy of a large body at a time
        size = digest = None
        if answer.truncated:
            assert answer.digest is not None
            size, digest = answer.size, f"sha256:{answer.digest.hexdigest()}"
            detail: str | None = f"body of {size} bytes is above {self.max_body}: kept its first {len(body)} and digest"
        else:
            try:
                body, original_encoding = decoded_content(body, headers)
                detail = None
            except ValueError as exc:
                detail = f"body kept as received: {exc}"
        response = Response(
            status=answer.status,
            reason=answer.reason.decode("latin-1"),
            http_version=answer.http_version,
            headers=headers,
            body=body,
            original_encoding=original_encoding,
            body_size=size,
            body_digest=digest,
            trailers=[(name.decode("latin-1"), value.decode("latin-1")) for name, value in answer.trailers],
        )
        return response, detail


class TargetClient:
    """The asyncio engine's client for one target: its own connection pool, requests sent in two steps."""

    def __init__(
        self,
        target: Target,
        *,
        timeouts: Timeouts,
        tls: TLSOptions = TLSOptions(),
        max_connections: int = 200,
        max_body: int = MAX_BODY,
        http2: bool = True,
    ) -> None:
        """`http2`: exchanges recorded in HTTP/2 go out in HTTP/2 (else everything in HTTP/1.1)."""
        self.target = target
        self.codec = TargetCodec(target, max_body=max_body)
        self._speaks_http2 = http2
        self._pool = ConnectionPool(
            self.codec.origin(tls),
            limit=max_connections,
            connect_timeout=timeouts.connect_s,
            read_timeout=timeouts.read_s,
            max_body=max_body,
        )
        self._http2 = Http2Pool(
            self.codec.origin(tls, http2=True),
            limit=HTTP2_CONNECTIONS,
            connect_timeout=timeouts.connect_s,
            read_timeout=timeouts.read_s,
            max_body=max_body,
        )
        """For the exchanges recorded in HTTP/2: h2c with prior knowledge to http://, ALPN h2 to https://."""

    def begin(
        self, request: Sendable, *, extra_headers: Headers = (), span_id: str = ""
    ) -> PendingAttempt:
        """Puts the request on the wire now: HTTP/1.1 before returning (on a kept-alive connection), HTTP/2 at
        the end of this loop turn with the other streams started in it; `finish` waits for the answer. Two
        steps so that one exchange reaches every target in the same instant."""
        method = request.method.upper()
        started = time.perf_counter_ns()
        try:
            if isinstance(request, EncodedHttp2Request) or (isinstance(request, Request) and is_http2(request.http_version)):
                if self._speaks_http2:
                    fields, body = self.codec.http2_request(request, extra_headers)
                    answer = self._http2.request(fields, body)
                    return PendingAttempt(started, b"", method, span_id, answer, None)
                if isinstance(request, EncodedHttp2Request):
                    request = request.request
            wire = self.codec.wire_request(request, extra_headers)
        except UnsendableRequest as exc:
            return PendingAttempt(started, b"", method, span_id, None, exc)
        return PendingAttempt(started, wire, method, span_id, self._pool.request(wire, method=method), None)

    async def finish(self, pending: PendingAttempt, *, epoch_ns: int) -> tuple[Attempt, Response | None]:
        result: RawAnswer | HttpClientError
        try:
            if pending.answer is None:
                assert pending.failure is not None
                raise pending.failure
            try:
                result = await pending.answer
            except StaleConnection:
                if pending.method not in IDEMPOTENT_METHODS:
                    raise
                result = await self._pool.request(pending.wire, method=pending.method, fresh=True)
        except HttpClientError as exc:
            result = exc
        return self.codec.outcome(result, started_ns=pending.started_ns, epoch_ns=epoch_ns, span_id=pending.span_id)

    async def send(
        self, request: Request, *, epoch_ns: int, extra_headers: Headers = (), span_id: str = ""
    ) -> tuple[Attempt, Response | None]:
        return await self.finish(self.begin(request, extra_headers=extra_headers, span_id=span_id), epoch_ns=epoch_ns)

    async def warm(self, connections: int, *, http2: bool = False) -> None:
        """`http2`: the exchanges about to be sent include HTTP/2 ones (a few multiplexed connections carry
        them, whatever `connections` says)."""
        if http2:
            await self._http2.warm(HTTP2_CONNECTIONS)
        await self._pool.warm(connections)

    async def aclose(self) -> None:
        self._pool.close()
        self._http2.close()
