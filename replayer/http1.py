"""A lean HTTP/1.1 client: keep-alive connections on asyncio protocols, parsed by httptools.

Why not a general client library: a replay sends requests that are already
complete (recorded method, target and headers, nothing to add or normalize),
to one known origin per pool, without redirects, cookies or proxies. aiohttp
spent most of each request on exactly that generality (URL objects, header
multidicts, default headers, its stream readers); here the request is bytes
built in one join and the answer is parsed by llhttp (through httptools, the
parser uvicorn uses) straight into a `RawAnswer`.

Failures are typed exceptions (`ConnectFailed`, `ReadTimeout`,
`ConnectionReset`, `ProtocolViolation`) so the caller can name each outcome.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from typing import cast

import httptools

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


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
    pass


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
    truncated: bool = False
    ttfb_ns: int = 0
    """perf_counter_ns() when the first byte of the answer arrived."""
    done_ns: int = 0
    """perf_counter_ns() when the answer was complete."""


class _NoBody(Exception):
    """Raised from the parser's headers callback to end an answer to HEAD, which has headers only."""


class Http1Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time (no pipelining: answers stay attributable)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_body: int) -> None:
        self._loop = loop
        self._max_body = max_body
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: RawAnswer | None = None
        self._waiter: asyncio.Future[RawAnswer] | None = None
        self._head_request = False
        self._headers_done = False
        self._last_read = 0.0
        self.closed = False
        self._answered = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio subclasses

    def data_received(self, data: bytes) -> None:
        answer = self._answer
        if answer is None:
            self._close()  # bytes nobody asked for: the connection's state is unknown
            return
        if not answer.ttfb_ns:
            answer.ttfb_ns = time.perf_counter_ns()
        self._last_read = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _NoBody):
                self._parser = httptools.HttpResponseParser(self)
                self._finish(answer)
            else:
                self._fail(ProtocolViolation(f"answer could not be read: {exc.__context__ or exc}"))
        except httptools.HttpParserError as exc:
            self._fail(ProtocolViolation(f"not an HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        answer = self._answer
        if answer is None:
            return
        if self._headers_done and self._reads_to_eof(answer):
            self._finish(answer)  # an answer without length or chunking ends when the connection does
        elif not answer.ttfb_ns and self._answered:
            self._fail(StaleConnection("the target had closed the kept-alive connection"))
        else:
            self._fail(ConnectionReset("the target closed the connection before the answer was complete"))

    # httptools callbacks
    def on_status(self, reason: bytes) -> None:
        assert self._answer is not None
        self._answer.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._answer is not None
        self._answer.headers.append((name, value))

    def on_headers_complete(self) -> None:
        answer = self._answer
        assert answer is not None
        answer.status = self._parser.get_status_code()
        answer.http_version = "HTTP/" + self._parser.get_http_version()
        self._headers_done = True
        if self._head_request and answer.status >= 200:
            raise _NoBody

    def on_body(self, chunk: bytes) -> None:
        answer = self._answer
        if answer is None or answer.truncated:
            return
        room = self._max_body - len(answer.body)
        if len(chunk) > room:
            answer.body += chunk[:room]
            answer.truncated = True  # stop reading a body this large; the connection cannot be reused
            self._finish(answer)
            self._close()
        else:
            answer.body += chunk

    def on_message_complete(self) -> None:
        answer = self._answer
        if answer is None:
            return
        if 100 <= answer.status < 200 and answer.status != 101:
            self._answer = RawAnswer(ttfb_ns=answer.ttfb_ns)  # an interim answer (100 Continue): the final one follows
            self._headers_done = False
            return
        if not self._parser.should_keep_alive():
            self._close()
        self._finish(answer)

    # the caller's side
    def start(self, wire: bytes, *, head: bool) -> asyncio.Future[RawAnswer]:
        """Sends one request now; the future completes with its whole answer. The pool's sweeper fails it
        when the target stays silent too long (`expire_if_silent`)."""
        assert self._transport is not None and self._answer is None
        self._answer = RawAnswer()
        self._head_request = head
        self._headers_done = False
        self._waiter = self._loop.create_future()
        self._last_read = self._loop.time()
        self._transport.write(wire)
        return self._waiter

    def expire_if_silent(self, now: float, read_timeout: float) -> None:
        if self._answer is not None and now - self._last_read >= read_timeout:
            self._fail(ReadTimeout(f"no answer bytes for {read_timeout:g} s"))

    def _reads_to_eof(self, answer: RawAnswer) -> bool:
        names = {name.lower() for name, _ in answer.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def _finish(self, answer: RawAnswer) -> None:
        answer.done_ns = time.perf_counter_ns()
        self._answer = None
        self._answered += 1
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(answer)

    def _fail(self, error: HttpClientError) -> None:
        self._answer = None
        self._close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)

    def _close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        self._close()


@dataclass(frozen=True, slots=True)
class Origin:
    host: str
    port: int
    tls: ssl.SSLContext | None


class ConnectionPool:
    """Keep-alive connections to one origin, at most `limit` of them busy at once; the most recently used first.

    Why `request` hands back a future rather than being a coroutine: with a
    kept-alive connection idle (nearly always, in a replay), the request is on
    the wire when `request` returns, without a task or a coroutine per request,
    so a replay can send one exchange to every target in one synchronous step.
    Read timeouts are one sweep over the busy connections every tenth of the
    timeout, instead of a timer per request: uvloop's timers cost more than
    the rest of a request's bookkeeping.
    """

    def __init__(
        self, origin: Origin, *, limit: int, connect_timeout: float, read_timeout: float, max_body: int
    ) -> None:
        self.origin = origin
        self._free = limit
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self._idle: deque[Http1Connection] = deque()
        self._busy: set[Http1Connection] = set()
        self._sweeping: asyncio.TimerHandle | None = None
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._sweep_every = min(1.0, max(0.01, read_timeout / 10))
        self._max_body = max_body

    def request(self, wire: bytes, *, method: str, fresh: bool = False) -> asyncio.Future[RawAnswer]:
        """Sends `wire` (a whole request) on a pooled connection, or on a new one when `fresh`.

        A kept-alive connection the server had already closed fails with
        `StaleConnection`; the caller may send again with `fresh=True`."""
        if not fresh and self._free > 0 and (connection := self._idle_connection()) is not None:
            self._free -= 1
            return self._send_on(connection, wire, method)
        return asyncio.ensure_future(self._request_when_free(wire, method, fresh=fresh))

    async def _request_when_free(self, wire: bytes, method: str, *, fresh: bool) -> RawAnswer:
        if self._free > 0:
            self._free -= 1
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._slot_waiters.append(waiter)
            try:
                await waiter  # `_release_slot` hands its slot over
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._release_slot()  # handed over just as this request was abandoned
                raise
        try:
            connection = (None if fresh else self._idle_connection()) or await self._connect()
        except BaseException:
            self._release_slot()
            raise
        return await self._send_on(connection, wire, method)

    def _send_on(self, connection: Http1Connection, wire: bytes, method: str) -> asyncio.Future[RawAnswer]:
        answer = connection.start(wire, head=method == "HEAD")
        self._busy.add(connection)
        answer.add_done_callback(lambda done: self._release(connection, done))
        if self._sweeping is None:
            self._sweeping = asyncio.get_running_loop().call_later(self._sweep_every, self._sweep)
        return answer

    def _release(self, connection: Http1Connection, answer: asyncio.Future[RawAnswer]) -> None:
        self._busy.discard(connection)
        if answer.cancelled():
            connection.close()  # abandoned mid-answer (Ctrl-C): its state is unknown
        if not connection.closed:
            self._idle.append(connection)
        self._release_slot()

    def _release_slot(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def _sweep(self) -> None:
        now = asyncio.get_running_loop().time()
        for connection in list(self._busy):
            connection.expire_if_silent(now, self._read_timeout)
        self._sweeping = (
            asyncio.get_running_loop().call_later(self._sweep_every, self._sweep) if self._busy else None
        )

    def _idle_connection(self) -> Http1Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        return None

    async def _connect(self) -> Http1Connection:
        loop = asyncio.get_running_loop()
        origin = self.origin
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, connection = await loop.create_connection(
                    lambda: Http1Connection(loop, self._max_body),
                    origin.host,
                    origin.port,
                    ssl=origin.tls,
                    server_hostname=origin.host if origin.tls else None,
                )
        except TimeoutError:
            raise ConnectTimeout(f"no connection to {origin.host}:{origin.port} within {self._connect_timeout:g} s")
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {origin.host}:{origin.port}: {exc.strerror or exc}") from exc
        connection.connection_made(transport)  # uvloop calls it only on its next turn; the request goes out now
        return connection

    def close(self) -> None:
        if self._sweeping is not None:
            self._sweeping.cancel()
        for connection in [*self._idle, *self._busy]:
            connection.close()
        self._idle.clear()
