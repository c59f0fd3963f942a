"""The asyncio engine's HTTP/2 connections: a few multiplexed connections per target on asyncio protocols.

Each connection carries many streams at once, as many as the peer's
MAX_CONCURRENT_STREAMS allows (`H2Session.capacity`); the pool spreads streams
over at most `limit` connections, opening another only while every open one
is busy, and queues a request when all are full. A connection the target
sends GOAWAY on takes no new stream and no longer counts against `limit`: it
is read until the streams the GOAWAY covers end, then closed. As in the HTTP/1.1 pool
(`replayer.aiopool`), `request` hands back a future and, with a connection
open, the request's frames are queued on it when it returns; a connection
writes what was queued in one loop turn with one `write` at the start of the
next (a syscall per request per target cost an HTTP/2 replay to nghttpd 12% of
its CPU and 15% of its rate, bench/README.md), so one exchange still reaches
every target in the same turn.
Read timeouts are one sweep over the connections every tenth of the timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import cast

from replaydiff.replayer.aiopool import mark_observed
from replaydiff.replayer.http1 import ConnectionReset, HttpClientError, Origin, ProtocolViolation, RawAnswer
from replaydiff.replayer.http2 import H2Session, check_alpn, preface_unanswered

LABEL = "the target"


class Http2Connection(asyncio.Protocol):
    def __init__(self, pool: Http2Pool, session: H2Session) -> None:
        self._pool = pool
        self.session = session
        self._transport: asyncio.Transport | None = None
        self.answers: dict[int, asyncio.Future[RawAnswer]] = {}
        """The streams in flight: each one's answer, by stream id. Their number is the connection's load."""
        self.closed = False
        self._flush_due = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Done when the peer's SETTINGS arrived (its stream limit is known), or failed with why it never will."""
        self.ready.add_done_callback(mark_observed)

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._transport is None:  # called by the pool at once, and again by uvloop on its next turn
            self._transport = cast(asyncio.Transport, transport)
            self._flush()

    def data_received(self, data: bytes) -> None:
        was_usable = self.session.usable
        finished = self.session.feed(data)
        self._flush()
        self._settle(finished)
        if not self.ready.done():
            if self.session.settled:
                self.ready.set_result(None)
            elif self.session.failure is not None:
                self.ready.set_exception(self.session.failure)
        if not self.session.usable:
            if self.session.idle:
                self.close()  # a GOAWAY's last stream ended (or none was left): nothing more comes
            elif was_usable:
                self._pool.retired()  # a graceful GOAWAY: read on until its streams end, new ones go elsewhere

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._settle(self.session.closed())
        if not self.ready.done():
            self.ready.set_exception(self.session.failure or ConnectionReset(f"{LABEL} closed the connection"))
        self._pool.lost(self)

    # the pool's side
    def start(self, headers: list[tuple[bytes, bytes]], body: bytes) -> asyncio.Future[RawAnswer]:
        answer: asyncio.Future[RawAnswer] = asyncio.get_running_loop().create_future()
        try:
            stream_id = self.session.start(headers, body)
        except ConnectionReset as exc:  # the connection closed under us
            self.session.usable = False
            answer.set_exception(exc)
            return answer
        self.answers[stream_id] = answer
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush_now)
        return answer

    def _flush_now(self) -> None:
        self._flush_due = False
        self._flush()

    def expire(self, now: float, timeout: float) -> None:
        if self.answers:
            expired = self.session.expire(now, timeout)
            self._flush()
            self._settle(expired)

    def _settle(self, finished: list[tuple[int, RawAnswer | HttpClientError]]) -> None:
        for stream_id, result in finished:
            answer = self.answers.pop(stream_id, None)
            if answer is None or answer.done():
                continue
            if isinstance(result, HttpClientError):
                answer.set_exception(result)
            else:
                answer.set_result(result)
            self._pool.stream_done()

    def _flush(self) -> None:
        data = self.session.data_to_send()
        if data and self._transport is not None and not self.closed:
            self._transport.write(data)

    def close(self) -> None:
        self.closed = True
        self.session.usable = False
        if self._transport is not None:
            self._transport.abort()


class Http2Pool:
    """At most `limit` HTTP/2 connections taking streams to one origin (h2c prior knowledge, or TLS with ALPN
    `h2`), besides those draining after a GOAWAY."""

    def __init__(
        self, origin: Origin, *, limit: int, connect_timeout: float, read_timeout: float, max_body: int
    ) -> None:
        self.origin = origin
        self._limit = limit
        self._connections: list[Http2Connection] = []
        self._opening = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._sweeping: asyncio.TimerHandle | None = None
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._sweep_every = min(1.0, max(0.01, read_timeout / 10))
        self._max_body = max_body

    def request(self, headers: list[tuple[bytes, bytes]], body: bytes) -> asyncio.Future[RawAnswer]:
        connection = self._least_loaded()
        if connection is not None:
            if connection.answers and self._room():
                self._open_in_background()  # every connection is busy: spread the next streams wider
            return self._start_on(connection, headers, body)
        task = asyncio.ensure_future(self._request_when_free(headers, body))
        task.add_done_callback(mark_observed)
        return task

    def _least_loaded(self) -> Http2Connection | None:
        """The least loaded connection that can take a stream now. Runs for every request to every target, so
        it asks a connection whether it can take a stream only when it would be the lightest yet (those calls
        and the load's were a tenth of the replay's function calls per exchange)."""
        best: Http2Connection | None = None
        lightest = 0
        for connection in self._connections:
            load = len(connection.answers)
            if (best is None or load < lightest) and connection.session.capacity:
                best, lightest = connection, load
        return best

    def _room(self) -> bool:
        """Whether another connection may open: one draining after a GOAWAY takes no stream, so it does not
        count against the limit (it closes when its last stream ends)."""
        usable = self._opening
        for connection in self._connections:
            usable += connection.session.usable
        return usable < self._limit

    def _start_on(
        self, connection: Http2Connection, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> asyncio.Future[RawAnswer]:
        answer = connection.start(headers, body)
        if self._sweeping is None:
            self._sweeping = asyncio.get_running_loop().call_later(self._sweep_every, self._sweep)
        return answer

    async def _request_when_free(self, headers: list[tuple[bytes, bytes]], body: bytes) -> RawAnswer:
        while (connection := self._least_loaded()) is None:
            if self._room():
                await self._open()  # when it fails, its error is this request's outcome
                continue
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter  # a stream ended, or a connection opened or closed
        return await self._start_on(connection, headers, body)

    async def _open(self) -> None:
        self._opening += 1
        try:
            connection = await self._connect()
            if not connection.closed:
                self._connections.append(connection)
        finally:
            self._opening -= 1
            self._wake_all()

    def _open_in_background(self) -> None:
        task = asyncio.ensure_future(self._open())
        task.add_done_callback(mark_observed)  # a failure is left to the requests that find no connection

    def stream_done(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def retired(self) -> None:
        """A connection took its last stream (GOAWAY): the requests waiting for room may open another."""
        self._wake_all()

    def lost(self, connection: Http2Connection) -> None:
        if connection in self._connections:
            self._connections.remove(connection)
        self._wake_all()

    def _wake_all(self) -> None:
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _sweep(self) -> None:
        now = time.monotonic()
        busy = False
        for connection in list(self._connections):
            connection.expire(now, self._read_timeout)
            if not connection.session.usable and connection.session.idle:
                connection.close()
            busy = busy or bool(connection.answers)
        loop = asyncio.get_running_loop()
        self._sweeping = loop.call_later(self._sweep_every, self._sweep) if busy or self._waiters else None

    async def _connect(self) -> Http2Connection:
        loop = asyncio.get_running_loop()
        origin = self.origin
        session = H2Session(self._max_body, label=LABEL)
        connection: Http2Connection | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, connection = await loop.create_connection(
                    lambda: Http2Connection(self, session),
                    origin.host,
                    origin.port,
                    ssl=origin.tls,
                    server_hostname=origin.host if origin.tls else None,
                )
                if origin.tls is not None:
                    check_alpn(transport.get_extra_info("ssl_object").selected_alpn_protocol())
                connection.connection_made(transport)  # uvloop calls it only on its next turn: the preface now
                # Streams wait for the peer's SETTINGS (one round trip per connection): sent before them, they
                # could exceed a stream limit the connection does not know yet.
                await asyncio.shield(connection.ready)
        except TimeoutError as exc:
            if connection is None:
                raise origin.connect_error(exc, self._connect_timeout) from exc
            connection.close()
            raise preface_unanswered(LABEL, self._connect_timeout) from None
        except OSError as exc:
            if connection is not None:
                connection.close()
            raise origin.connect_error(exc, self._connect_timeout) from exc
        except HttpClientError:
            if connection is not None:
                connection.close()
            raise
        return connection

    async def warm(self, count: int) -> None:
        """Opens up to `count` connections (and the limit) before a replay's clock starts; a failure is left to
        the requests to report."""
        wanted = min(count, self._limit) - len(self._connections) - self._opening
        await asyncio.gather(*(self._open() for _ in range(wanted)), return_exceptions=True)

    def close(self) -> None:
        if self._sweeping is not None:
            self._sweeping.cancel()
        for connection in list(self._connections):
            connection.close()
        self._connections.clear()
        self._wake_all()
