"""A small HTTP/2 server written with h2 (cleartext prior knowledge, or TLS with ALPN h2), on
`tests.servers.socket_server`: each test decides per stream what it answers, including what a misbehaving target
does (reset the stream, GOAWAY, stay silent)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import h2.config
import h2.connection
import h2.events
import h2.settings
from hyperframe.frame import GoAwayFrame

from tests.servers import socket_server


@dataclass(frozen=True)
class Stream:
    """One request as the server read it."""

    headers: list[tuple[str, str]]
    body: bytes
    connection: int
    """Which connection (in accept order) carried it."""

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    delay_s: float = 0.0
    action: Literal["answer", "reset", "goaway", "silence", "drain"] = "answer"
    """"drain": a graceful shutdown, as grpcio's stop(grace), Go or Envoy do it: GOAWAY (NO_ERROR) naming this
    stream the last, then the answer, then the connection closes once its streams are answered."""
    error_code: int = 0
    """RST_STREAM's or GOAWAY's error code."""
    until: threading.Event | None = None
    """The answer waits for this (a slow handler the test lets go)."""


@dataclass
class Observed:
    streams: list[Stream] = field(default_factory=list)
    connections: int = 0
    most_open: int = 0
    """The most streams open at once on one connection (received, not yet answered)."""


@contextlib.contextmanager
def h2_server(
    respond: Callable[[Stream], Reply], *, max_streams: int | None = None, tls: ssl.SSLContext | None = None,
    early: Callable[[Stream], Reply | None] = lambda _: None,
) -> Iterator[tuple[str, Observed]]:
    """Yields the base URL and what the server saw. `early` may answer a stream from its headers alone, before
    its body (as a server refusing a large upload does)."""
    observed = Observed()
    lock = threading.Lock()

    def handle(sock: socket.socket) -> None:
        with lock:
            number = observed.connections
            observed.connections += 1
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_side=True)
            except (OSError, ssl.SSLError):
                sock.close()
                return
        with contextlib.closing(sock):
            _serve_connection(sock, number, respond, early, observed, max_streams)

    with socket_server(handle) as url:
        yield (url.replace("http://", "https://") if tls else url), observed


def _serve_connection(
    sock: socket.socket, number: int, respond: Callable[[Stream], Reply], early: Callable[[Stream], Reply | None],
    observed: Observed, max_streams: int | None,
) -> None:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    if max_streams is not None:  # in force once the client acknowledges it; sent with the preface
        conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams})
    guard = threading.RLock()
    reading: dict[int, tuple[list[tuple[str, str]], bytearray]] = {}
    sending: dict[int, tuple[memoryview, list[tuple[str, str]]]] = {}
    open_streams: set[int] = set()
    closing = threading.Event()
    draining = threading.Event()

    def flush() -> None:
        if data := conn.data_to_send():
            with contextlib.suppress(OSError):
                sock.sendall(data)

    def pump() -> None:
        """Each answer's body as far as the client's windows allow, then its trailers."""
        for stream_id in list(sending):
            body, trailers = sending[stream_id]
            while body:
                size = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size, len(body))
                if size <= 0:
                    break
                conn.send_data(stream_id, body[:size].tobytes())
                body = body[size:]
            sending[stream_id] = (body, trailers)
            if not body:
                del sending[stream_id]
                if trailers:
                    conn.send_headers(stream_id, trailers, end_stream=True)
                else:
                    conn.end_stream(stream_id)

    def reply(stream_id: int, answer: Reply) -> None:
        with guard:
            if closing.is_set():
                return
            open_streams.discard(stream_id)
            if answer.action == "reset":
                conn.reset_stream(stream_id, answer.error_code)
            elif answer.action == "goaway":
                conn.close_connection(answer.error_code, last_stream_id=max(0, stream_id - 2))
                flush()
                closing.set()
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                return
            elif answer.action in ("answer", "drain"):
                headers = [(":status", str(answer.status)), *answer.headers]
                done = not answer.body and not answer.trailers
                conn.send_headers(stream_id, headers, end_stream=done)
                if not done:
                    sending[stream_id] = (memoryview(answer.body), answer.trailers)
                    pump()
            flush()
            if draining.is_set() and not open_streams and not sending:
                closing.set()
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def later(stream_id: int, answer: Reply) -> None:
        if answer.until is not None:
            answer.until.wait(10)
        else:
            time.sleep(answer.delay_s)
        reply(stream_id, answer)

    with guard:
        flush()
    while not closing.is_set():
        try:
            data = sock.recv(65536)
        except OSError:
            return
        if not data:
            return
        with guard:
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    open_streams.add(event.stream_id)
                    observed.most_open = max(observed.most_open, len(open_streams))
                    if (answer := early(Stream(list(event.headers), b"", number))) is not None:
                        reply(event.stream_id, answer)
                    else:
                        reading[event.stream_id] = (list(event.headers), bytearray())
                elif isinstance(event, h2.events.DataReceived):
                    if event.stream_id in reading:
                        reading[event.stream_id][1].extend(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id in reading:
                    headers, body = reading.pop(event.stream_id)
                    stream = Stream(headers, bytes(body), number)
                    observed.streams.append(stream)
                    answer = respond(stream)
                    if answer.action == "drain":  # by hand: h2 sends nothing after its own GOAWAY
                        flush()
                        with contextlib.suppress(OSError):
                            sock.sendall(GoAwayFrame(0, last_stream_id=event.stream_id).serialize())
                        draining.set()
                    if answer.delay_s or answer.until is not None:
                        threading.Thread(target=later, args=(event.stream_id, answer), daemon=True).start()
                    else:
                        reply(event.stream_id, answer)
                elif isinstance(event, h2.events.WindowUpdated):
                    pump()
            flush()
