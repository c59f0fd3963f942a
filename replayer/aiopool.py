"""The asyncio engine's connections: a keep-alive HTTP/1.1 pool per target on asyncio protocols."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast

from replaydiff.replayer.http1 import (
    AnswerReader,
    HttpClientError,
    Origin,
    ProtocolViolation,
    RawAnswer,
    ReadTimeout,
)


def mark_observed(answer: asyncio.Future[Any]) -> None:
    """Marks a failure as seen: the caller still gets it when it awaits the answer, but an answer nobody
    awaits any more (its replay was interrupted while waiting for another target's) is not reported by
    asyncio, at exit, as an exception never retrieved."""
    if not answer.cancelled():
        answer.exception()


class Http1Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time (no pipelining: answers stay attributable)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_body: int) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._reader = AnswerReader(max_body)
        self._waiter: asyncio.Future[RawAnswer] | None = None
        self._sent_at = 0.0
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio subclasses

    def data_received(self, data: bytes) -> None:
        try:
            answer = self._reader.feed(data)
        except ProtocolViolation as exc:
            self._fail(exc)
            return
        if answer is not None:
            if not self._reader.keep_alive:
                self.close()
            self._finish(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._reader.expecting:
            try:
                self._finish(self._reader.at_close())
            except HttpClientError as error:
                self._fail(error)

    # the caller's side
    def start(self, wire: bytes, *, head: bool) -> asyncio.Future[RawAnswer]:
        """Sends one request now; the future completes with its whole answer. The pool's sweeper fails it
        when the whole answer has not arrived in time (`expire_if_late`)."""
        assert self._transport is not None and not self._reader.expecting
        self._reader.expect(head=head)
        self._waiter = self._loop.create_future()
        self._sent_at = self._loop.time()
        self._transport.write(wire)
        return self._waiter

    def expire_if_late(self, now: float, timeout: float) -> None:
        """Counted from when the request left, not from the last byte read: a target trickling its answer a
        byte at a time must not hold a replay for longer than the timeout."""
        if self._reader.expecting and now - self._sent_at >= timeout:
            self._fail(ReadTimeout.after(timeout))

    def _finish(self, answer: RawAnswer) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(answer)

    def _fail(self, error: HttpClientError) -> None:
        self.close()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()


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
        task = asyncio.ensure_future(self._request_when_free(wire, method, fresh=fresh))
        task.add_done_callback(mark_observed)
        return task

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
        mark_observed(answer)
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
            connection.expire_if_late(now, self._read_timeout)
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
        except OSError as exc:  # a timeout included
            raise origin.connect_error(exc, self._connect_timeout) from exc
        connection.connection_made(transport)  # uvloop calls it only on its next turn; the request goes out now
        return connection

    async def warm(self, count: int) -> None:
        """Opens idle connections, up to `count` (and the limit), before a replay's clock starts: opened on
        demand, the first second's connections (one per session starting then, per target, as each new one
        keeps the next request from finding an idle one) were the loop's work that made it the second with the
        most late requests. A connection that fails to open is left to the requests to report."""
        wanted = min(count, self._free) - len(self._idle)
        opened = await asyncio.gather(*(self._connect() for _ in range(wanted)), return_exceptions=True)
        self._idle.extend(connection for connection in opened if isinstance(connection, Http1Connection))

    def close(self) -> None:
        if self._sweeping is not None:
            self._sweeping.cancel()
        for connection in [*self._idle, *self._busy]:
            connection.close()
        self._idle.clear()
