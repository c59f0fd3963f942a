"""Misbehaving HTTP targets on 127.0.0.1, one per behaviour, for the chaos suite.

Each is a plain TCP server on its own threads: it reads a request's head and
then does one wrong thing. No HTTP library, so nothing tidies the wrong thing up.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

from tests.servers import socket_server

Behaviour = Callable[[socket.socket, threading.Event], None]

FIFTY_MB = 50 * 1024 * 1024


def _read_head(conn: socket.socket) -> bool:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
    return True


def never_answers(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait()


def garbage(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"\x00\xffSSH-2.0-not http at all\r\n\x13\x37" * 50)


def closes_mid_body(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + b'{"a": 1' * 10)


def fifty_mb_body(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % FIFTY_MB)
    block = bytes(range(256)) * 4096  # 1 MiB
    for _ in range(FIFTY_MB // len(block)):
        if stop.is_set():
            return
        conn.sendall(block)


def megabyte_header_line(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Huge: " + b"h" * (1 << 20) + b"\r\nContent-Length: 2\r\n\r\n{}")


def ten_thousand_headers(conn: socket.socket, stop: threading.Event) -> None:
    # a fresh value per answer, as a server stamping each answer would: every header differs between targets
    stamp = str(time.perf_counter_ns()).encode()
    lines = b"".join(b"X-H%d: %d-%s\r\n" % (i, i, stamp) for i in range(10_000))
    conn.sendall(b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 2\r\n\r\n{}")


def trickle(conn: socket.socket, stop: threading.Event) -> None:
    """One byte every 100 ms, headers and body alike: each read arrives well within any per-read timeout."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n" + b"x" * 200
    for byte in answer:
        if stop.wait(0.1):
            return
        conn.sendall(bytes([byte]))


def reset(conn: socket.socket, stop: threading.Event) -> None:
    # SO_LINGER on with a zero timeout: close() sends RST instead of FIN
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


BEHAVIOURS: dict[str, Behaviour] = {
    "never-answers": never_answers,
    "garbage": garbage,
    "closes-mid-body": closes_mid_body,
    "50mb-body": fifty_mb_body,
    "1mb-header-line": megabyte_header_line,
    "10000-headers": ten_thousand_headers,
    "trickle": trickle,
    "rst": reset,
}


@contextlib.contextmanager
def misbehaving(behaviour: Behaviour) -> Iterator[str]:
    """Yields the base URL. Every connection gets the behaviour after each request head; the server stops,
    and closes its connections, when the block ends."""
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(30)
                while _read_head(conn):
                    behaviour(conn, stop)
                    if behaviour is not ten_thousand_headers and behaviour is not megabyte_header_line:
                        return  # each of the others ruins its connection
            except OSError:
                pass  # the client hung up, as a client facing this may

    with socket_server(handle) as url:
        try:
            yield url
        finally:
            stop.set()  # behaviours that hold their connection (never answers, trickle) end now
