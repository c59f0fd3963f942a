"""The locust workers' connections: keep-alive HTTP/1.1 and HTTP/2 on blocking sockets, which gevent makes
cooperative.

The same wire bytes and the same `AnswerReader` (HTTP/1.1) or `H2Session`
(HTTP/2) as the asyncio engine, so both engines send and read alike; only the
waiting differs (a greenlet blocks in `recv` where the asyncio engine awaits a
future). An HTTP/2 connection here carries one stream at a time, taken by one
greenlet as an HTTP/1.1 one is: a locust worker's concurrency is its
greenlets, and a stream per connection keeps each greenlet's reads its own.
After a graceful GOAWAY that covers its stream, a connection is read until
that stream's answer came, then closed.
"""

from __future__ import annotations

import socket
import time

from replaydiff.replayer.http1 import (
    IDEMPOTENT_METHODS,
    AnswerReader,
    ConnectionReset,
    HttpClientError,
    Origin,
    ProtocolViolation,
    RawAnswer,
    ReadTimeout,
    StaleConnection,
)
from replaydiff.replayer.http2 import H2Session, check_alpn, preface_unanswered

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
                data = _read_by(self._sock, deadline, read_timeout)
            except HttpClientError:
                self.close()
                raise
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


def _read_by(sock: socket.socket, deadline: float, read_timeout: float) -> bytes:
    """The next bytes read, if they come before `deadline` (the whole answer's, not each read's: a trickle is a
    timeout); b"" when the peer closed."""
    try:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        return sock.recv(_RECV)
    except TimeoutError:
        raise ReadTimeout.after(read_timeout) from None
    except OSError as exc:
        raise ConnectionReset(f"the connection broke: {exc}") from exc


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
        return BlockingConnection(_connect(self.origin, self._connect_timeout), self._max_body)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


def _connect(origin: Origin, timeout_s: float) -> socket.socket:
    try:
        sock = socket.create_connection((origin.host, origin.port), timeout=timeout_s)
        if origin.tls is not None:
            sock = origin.tls.wrap_socket(sock, server_hostname=origin.host)
    except OSError as exc:  # a timeout included
        raise origin.connect_error(exc, timeout_s) from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class BlockingH2Connection:
    """One HTTP/2 connection, one stream at a time."""

    def __init__(self, sock: socket.socket, max_body: int) -> None:
        self._sock = sock
        self.session = H2Session(max_body, label="the target")
        self.closed = False

    def settle(self, timeout_s: float) -> None:
        """Sends the preface and reads until the peer's SETTINGS came, as the asyncio pool waits for them, so
        a peer that is not HTTP/2 is the same outcome on both engines."""
        session = self.session
        deadline = time.monotonic() + timeout_s
        while not session.settled:
            try:
                if data := session.data_to_send():
                    self._sock.sendall(data)
                data = _read_by(self._sock, deadline, timeout_s)
            except ReadTimeout:
                raise preface_unanswered("the target", timeout_s) from None
            except OSError as exc:
                raise ConnectionReset(f"the connection broke: {exc}") from exc
            if data:
                session.feed(data)
            else:
                session.closed()
            if session.failure is not None:
                raise session.failure

    def exchange(self, fields: list[tuple[bytes, bytes]], body: bytes, *, read_timeout: float) -> RawAnswer:
        """Sends one request as a stream and reads until that stream's whole answer came, within `read_timeout`."""
        session = self.session
        stream_id = session.start(fields, body)
        deadline = time.monotonic() + read_timeout
        while True:
            try:
                if data := session.data_to_send():
                    self._sock.sendall(data)
                data = _read_by(self._sock, deadline, read_timeout)
            except (HttpClientError, OSError) as exc:
                self.close()
                if isinstance(exc, HttpClientError):
                    raise
                raise ConnectionReset(f"the request could not be sent: {exc}") from exc
            finished = session.feed(data) if data else session.closed()
            for finished_id, result in finished:
                if finished_id == stream_id:
                    if not session.usable:
                        self.close()
                    if isinstance(result, HttpClientError):
                        raise result
                    return result

    def close(self) -> None:
        self.closed = True
        self._sock.close()


class BlockingH2Pool:
    """Kept-alive HTTP/2 connections to one origin (h2c prior knowledge, or TLS with ALPN `h2`); each greenlet
    takes one for a stream and puts it back."""

    def __init__(self, origin: Origin, *, connect_timeout: float, read_timeout: float, max_body: int) -> None:
        self.origin = origin
        self._idle: list[BlockingH2Connection] = []
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_body = max_body

    def request(self, fields: list[tuple[bytes, bytes]], body: bytes) -> RawAnswer:
        connection = self._idle.pop() if self._idle else self._connect()
        try:
            answer = connection.exchange(fields, body, read_timeout=self._read_timeout)
        except BaseException:
            connection.close()
            raise
        if not connection.closed and connection.session.usable:
            self._idle.append(connection)
        return answer

    def _connect(self) -> BlockingH2Connection:
        sock = _connect(self.origin, self._connect_timeout)
        if self.origin.tls is not None:
            try:
                check_alpn(sock.selected_alpn_protocol())  # type: ignore[attr-defined]
            except ProtocolViolation:
                sock.close()
                raise
        connection = BlockingH2Connection(sock, self._max_body)
        try:
            connection.settle(self._connect_timeout)
        except HttpClientError:
            connection.close()
            raise
        return connection

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
