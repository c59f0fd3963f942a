"""The locust workers' connections: keep-alive HTTP/1.1 on blocking sockets, which gevent makes cooperative.

The same wire bytes and the same `AnswerReader` as the asyncio engine, so both
engines send and read alike; only the waiting differs (a greenlet blocks in
`recv` where the asyncio engine awaits a future).
"""

from __future__ import annotations

import socket
import time

from replaydiff.replayer.http1 import (
    IDEMPOTENT_METHODS,
    AnswerReader,
    ConnectionReset,
    Origin,
    RawAnswer,
    ReadTimeout,
    StaleConnection,
)

_RECV = 1 << 16


class BlockingConnection:
    def __init__(self, sock: socket.socket, max_body: int) -> None:
        self._sock = sock
        self._reader = AnswerReader(max_body)
        self.closed = False

    def exchange(self, wire: bytes, *, head: bool, read_timeout: float) -> RawAnswer:
        """Sends one request and reads its whole answer, which must be complete within `read_timeout`."""
        self._reader.expect(head=head)
        try:
            self._sock.sendall(wire)
        except OSError as exc:
            self.close()
            stale = self._reader.answered > 0
            raise (StaleConnection if stale else ConnectionReset)(f"the request could not be sent: {exc}") from exc
        deadline = time.monotonic() + read_timeout  # the whole answer, not each read: a trickle is a timeout
        while True:
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self._sock.settimeout(remaining)
                data = self._sock.recv(_RECV)
            except TimeoutError:
                self.close()
                raise ReadTimeout.after(read_timeout) from None
            except OSError as exc:
                self.close()
                raise ConnectionReset(f"the connection broke: {exc}") from exc
            if not data:
                self.close()
                return self._reader.at_close()
            answer = self._reader.feed(data)
            if answer is not None:
                if not self._reader.keep_alive:
                    self.close()
                return answer

    def close(self) -> None:
        self.closed = True
        self._sock.close()


class BlockingPool:
    """Kept-alive connections to one origin; each greenlet takes one for a request and puts it back."""

    def __init__(self, origin: Origin, *, connect_timeout: float, read_timeout: float, max_body: int) -> None:
        self.origin = origin
        self._idle: list[BlockingConnection] = []
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_body = max_body

    def request(self, wire: bytes, *, method: str) -> RawAnswer:
        """A kept-alive connection the server had closed is retried once on a fresh one for idempotent methods."""
        connection = self._idle.pop() if self._idle else self._connect()
        try:
            try:
                answer = connection.exchange(wire, head=method == "HEAD", read_timeout=self._read_timeout)
            except StaleConnection:
                if method not in IDEMPOTENT_METHODS:
                    raise
                connection = self._connect()
                answer = connection.exchange(wire, head=method == "HEAD", read_timeout=self._read_timeout)
        except BaseException:
            connection.close()
            raise
        if not connection.closed:
            self._idle.append(connection)
        return answer

    def _connect(self) -> BlockingConnection:
        origin = self.origin
        try:
            sock = socket.create_connection((origin.host, origin.port), timeout=self._connect_timeout)
            if origin.tls is not None:
                sock = origin.tls.wrap_socket(sock, server_hostname=origin.host)
        except OSError as exc:  # a timeout included
            raise origin.connect_error(exc, self._connect_timeout) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return BlockingConnection(sock, self._max_body)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
