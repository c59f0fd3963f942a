"""What the replay benchmarks share: a fast local HTTP server in a process of its own, and synthetic corpora.

Why a hand-written server on asyncio protocols: the benchmarks measure the
client side, so the server must be cheaper per request than any client under
test (an aiohttp app costs about as much per request as an aiohttp client).
Why its own process: a server sharing the measured process's GIL would charge
its own work to the replayer.

Run alone, it serves until killed: `python bench/fixtures.py [protocol|aiohttp|h2]`
prints its URL. `aiohttp` is a plain aiohttp app, slower per request, for
comparison with figures measured against one; `h2` answers HTTP/2 (h2c prior
knowledge) with h2, the Python HTTP/2 server the HTTP/2 benchmark compares with.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from replaydiff.corpora import CorpusWriter, Exchange, Request, Response

_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n"
    b'{"id": 1, "name": "item 1"}'
)


def _body_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


class _FixedAnswer(asyncio.Protocol):
    """Answers every request on a keep-alive connection with the same small JSON body; pipelining-safe."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answers = []
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = _body_length(self.buffer[:end])
            if len(self.buffer) < end + 4 + length:
                break
            self.buffer = self.buffer[end + 4 + length :]
            answers.append(_RESPONSE)
        if answers:
            self.transport.write(b"".join(answers))


async def _serve_protocol() -> None:
    server = await asyncio.get_running_loop().create_server(_FixedAnswer, "127.0.0.1", 0, backlog=4096)
    print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


async def _serve_aiohttp() -> None:
    """The calibration of issue 4 ("aiohttp client and locust reach about a third of wrk") fits this server."""
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=_RESPONSE.partition(b"\r\n\r\n")[2], content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


class _FixedAnswerH2(asyncio.Protocol):
    """HTTP/2 (h2c prior knowledge) on h2: answers every stream with the same small JSON body."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        import h2.config
        import h2.connection

        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=False,
            validate_outbound_headers=False, normalize_outbound_headers=False,
        ))  # fmt: skip
        self.conn.initiate_connection()
        self.transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        import h2.events

        body = _RESPONSE.partition(b"\r\n\r\n")[2]
        headers = [(b":status", b"200"), (b"content-type", b"application/json"), (b"content-length", b"27")]
        import h2.exceptions

        try:
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.StreamEnded):
                    self.conn.send_headers(event.stream_id, headers)
                    self.conn.send_data(event.stream_id, body, end_stream=True)
                elif isinstance(event, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        except h2.exceptions.ProtocolError:  # the client said GOAWAY (h2load does when it stops): done
            self.transport.close()
            return
        if out := self.conn.data_to_send():
            self.transport.write(out)


async def _serve_h2() -> None:
    server = await asyncio.get_running_loop().create_server(_FixedAnswerH2, "127.0.0.1", 0, backlog=4096)
    print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


async def _serve_grpc_aio() -> None:
    """A grpc.aio server answering every unary call of any method with the same bytes (no (de)serialization):
    the cheapest grpcio server per call, so that a gRPC client's own cost shows in its rate."""
    import grpc

    answer = _GRPC_ANSWER

    async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return answer

    class AnyMethod(grpc.GenericRpcHandler):
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(unary)

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((AnyMethod(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"http://127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


_GRPC_ANSWER = b"\n\x05sku-3\x12\x06item 3\x18\xe7\x07"
"""A small protobuf message (fields 1, 2 and 3), about what the demo catalog answers to GetItem."""

SERVERS = {"protocol": _serve_protocol, "aiohttp": _serve_aiohttp, "h2": _serve_h2, "grpc-aio": _serve_grpc_aio}


@contextlib.contextmanager
def fast_server(kind: str = "protocol") -> Iterator[str]:
    """Yields the base URL of a `SERVERS[kind]` server; its process stops when the block ends."""
    process = subprocess.Popen([sys.executable, __file__, kind], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.kill()
        process.wait()


def synthetic_corpus(
    path: Path, *, count: int, sessions: int, interval_us: int = 1000, duration_us: int = 200,
    http_version: str = "HTTP/1.1", path_of: str = "/api/products/{n}",
) -> Path:
    """GET exchanges one `interval_us` apart, round-robin over `sessions` (1,000/s recorded by default), each
    answered in `duration_us` when recorded; `path_of` names the path of request n (its `{n}` below 1,000)."""
    body = b'{"id": 1, "name": "item 1"}'
    with CorpusWriter(path, source="bench") as writer:
        for i in range(count):
            session = f"s{i % sessions}"
            writer.write(Exchange(
                id=str(i),
                session=session,
                start_us=i * interval_us,
                request=Request("GET", "http", "shop.internal", 80, path_of.format(n=i % 1000),
                                http_version=http_version,
                                headers=[("Host", "shop.internal"), ("Accept", "application/json"),
                                         ("User-Agent", "bench"), ("X-Session", session)]),
                response=Response(200, headers=[("Content-Type", "application/json")], body=body),
                duration_us=duration_us,
            ))
    return path


def machine_note() -> str:
    """Other processes share the cores with every client measured: the load says how much to trust a run."""
    return f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start"


def timed_run(command: list[str], **kwargs: object) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])}… failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return result, time.perf_counter() - started


if __name__ == "__main__":
    asyncio.run(SERVERS[sys.argv[1] if len(sys.argv) > 1 else "protocol"]())
