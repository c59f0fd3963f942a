"""HTTP/1.1 answers off the wire: llhttp (through httptools) into `RawAnswer`s, and the typed failures.

Why not a general client library: a replay sends requests that are already
complete (recorded method, target and headers, nothing to add or normalize),
to one known origin per pool, without redirects, cookies or proxies. aiohttp
spent most of each request on exactly that generality (URL objects, header
multidicts, default headers, its stream readers); here the request is bytes
built in one join and the answer is parsed by llhttp (through httptools, the
parser uvicorn uses) straight into a `RawAnswer`. `AnswerReader` is the part
every transport shares: the asyncio engine's pool (`replayer.aiopool`) and the
locust workers' blocking sockets (`replayer.blocking`).

Failures are typed exceptions (`ConnectFailed`, `ReadTimeout`,
`ConnectionReset`, `ProtocolViolation`) so the caller can name each outcome.
"""

from __future__ import annotations

import hashlib
import ssl
import time
from dataclasses import dataclass, field

import httptools

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

KEPT_PREFIX = 64 * 1024
"""What is kept of a body above the cap: enough to show where two answers differ, small enough that a replay
of 50 MB answers stays within a few hundred MB."""


class HttpClientError(Exception):
    """Base of everything a target can do wrong; the message is the detail shown in results."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.at_ns = time.perf_counter_ns()
        """When it happened: an attempt's duration ends here, not when its caller looks."""


class ConnectFailed(HttpClientError):
    pass


class ConnectTimeout(HttpClientError):
    pass


class ReadTimeout(HttpClientError):
    """The whole answer (headers and body) did not arrive within the timeout, however it trickled in."""

    @classmethod
    def after(cls, timeout_s: float) -> ReadTimeout:
        return cls(f"no complete answer within {timeout_s:g} s")


class ConnectionReset(HttpClientError):
    """The peer closed the connection before the answer was complete."""


class StaleConnection(ConnectionReset):
    """A kept-alive connection closed without a byte of answer: the server had timed it out."""


class ProtocolViolation(HttpClientError):
    """It answered, but not with HTTP."""


@dataclass(slots=True)
class RawAnswer:
    status: int = 0
    reason: bytes = b""
    http_version: str = ""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    """Fields after the body: HTTP/2 trailers (gRPC's `grpc-status`); HTTP/1.1 chunked trailers are not kept."""
    truncated: bool = False
    """The body was above the cap: `body` holds its first `KEPT_PREFIX` bytes, `size` and `digest` the whole."""
    size: int = 0
    digest: hashlib._Hash | None = None
    ttfb_ns: int = 0
    """perf_counter_ns() when the first byte of the answer arrived."""
    done_ns: int = 0
    """perf_counter_ns() when the answer was complete."""

    def add_body(self, chunk: bytes, max_body: int) -> None:
        """Keeps the body up to `max_body`; beyond it, a prefix and a digest of the whole (so two large answers
        still compare, and the connection stays usable)."""
        self.size += len(chunk)
        if self.digest is not None:
            self.digest.update(chunk)
        elif self.size > max_body:
            self.digest = hashlib.sha256(self.body)
            self.digest.update(chunk)
            del self.body[min(KEPT_PREFIX, max_body) :]
            self.truncated = True
        else:
            self.body += chunk


class _NoBody(Exception):
    """Raised from the parser's headers callback to end an answer to HEAD, which has headers only."""


class AnswerReader:
    """One connection's answers, one at a time: feed it the bytes read, it says when an answer is complete.

    HEAD answers end after their headers, interim answers (100 Continue) are
    skipped, a body longer than `max_body` is read to its end but kept as a
    prefix and a digest of the whole (so the connection stays usable and two
    large answers still compare), and an answer without length or chunking
    ends with the connection (`at_close`).
    """

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._parser = httptools.HttpResponseParser(self)
        self._answer: RawAnswer | None = None
        self._head = False
        self._headers_done = False
        self._complete = False
        self.keep_alive = True
        self.answered = 0
        """Answers completed on this connection: a closed connection that had answered before went stale."""

    @property
    def expecting(self) -> bool:
        return self._answer is not None

    def expect(self, *, head: bool) -> None:
        self._answer = RawAnswer()
        self._head = head
        self._headers_done = self._complete = False

    def feed(self, data: bytes) -> RawAnswer | None:
        """The answer, once these bytes complete it; raises `ProtocolViolation` for bytes that are not HTTP."""
        answer = self._answer
        if answer is None:
            self.keep_alive = False
            raise ProtocolViolation("bytes arrived that no request asked for")
        if not answer.ttfb_ns:
            answer.ttfb_ns = time.perf_counter_ns()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _NoBody):
                raise ProtocolViolation(f"answer could not be read: {exc.__context__ or exc}") from None
            self._parser = httptools.HttpResponseParser(self)  # HEAD: the parser waited for a body that never comes
            self._complete = True
        except httptools.HttpParserError as exc:
            raise ProtocolViolation(f"not an HTTP answer: {exc}") from None
        return self._take() if self._complete else None

    def at_close(self) -> RawAnswer:
        """The connection closed while an answer was expected: that answer, if the close is what ends it."""
        answer = self._answer
        assert answer is not None
        self.keep_alive = False
        if self._headers_done and _reads_to_eof(answer):
            return self._take()
        self._answer = None
        if not answer.ttfb_ns and self.answered:
            raise StaleConnection("the target had closed the kept-alive connection")
        raise ConnectionReset("the target closed the connection before the answer was complete")

    def _take(self) -> RawAnswer:
        answer = self._answer
        assert answer is not None
        answer.done_ns = time.perf_counter_ns()
        self._answer = None
        self.answered += 1
        return answer

    # httptools callbacks
    def on_status(self, reason: bytes) -> None:
        if self._answer is not None:
            self._answer.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._answer is not None:
            self._answer.headers.append((name, value))

    def on_headers_complete(self) -> None:
        answer = self._answer
        if answer is None:
            return
        answer.status = self._parser.get_status_code()
        answer.http_version = "HTTP/" + self._parser.get_http_version()
        self._headers_done = True
        if self._head and answer.status >= 200:
            raise _NoBody

    def on_body(self, chunk: bytes) -> None:
        answer = self._answer
        if answer is None or self._complete:
            return
        answer.add_body(chunk, self._max_body)

    def on_message_complete(self) -> None:
        answer = self._answer
        if answer is None or self._complete:
            return
        if 100 <= answer.status < 200 and answer.status != 101:
            self._answer = RawAnswer(ttfb_ns=answer.ttfb_ns)  # an interim answer (100 Continue): the final one follows
            self._headers_done = False
            return
        self.keep_alive = self._parser.should_keep_alive()
        self._complete = True


def _reads_to_eof(answer: RawAnswer) -> bool:
    names = {name.lower() for name, _ in answer.headers}
    return b"content-length" not in names and b"transfer-encoding" not in names


@dataclass(frozen=True, slots=True)
class Origin:
    host: str
    port: int
    tls: ssl.SSLContext | None

    def connect_error(self, exc: OSError, timeout_s: float) -> HttpClientError:
        """What a failed connection attempt is called in the results, whichever transport made it."""
        if isinstance(exc, TimeoutError):
            return ConnectTimeout(f"no connection to {self.host}:{self.port} within {timeout_s:g} s")
        return ConnectFailed(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}")
