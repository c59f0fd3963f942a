"""A target shutting down gracefully while a replay's calls are in flight: grpcio's `server.stop(grace)` sends
GOAWAY (NO_ERROR) and answers the calls it already took; those answers are the calls' records, not resets. The
pools of both engines read a draining connection until its streams end and send new streams elsewhere (the h2
server of tests/h2server.py drains one connection on demand while it still accepts new ones)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field

import asyncio

import grpc

from replaydiff.corpora import Exchange, ReplayRecord, Request, Response
from replaydiff.corpora.grpc import GrpcMessage, grpc_status, join_messages, split_messages
from replaydiff.eventloop import run_fast
from replaydiff.replayer.blocking import BlockingH2Pool
from replaydiff.replayer.engine import Replayer
from replaydiff.replayer.h2pool import Http2Pool
from replaydiff.replayer.http1 import Origin, RawAnswer
from replaydiff.replayer.plan import plan
from replaydiff.replayer.targets import Target
from tests.h2server import Reply, Stream, h2_server
from tests.waiting import wait_until

SERVICE = "test.Drain"
SLOW_CALLS = 3


@dataclass
class Draining:
    """A grpcio server whose Slow calls wait for `release`; `taken` counts the Slow calls its handlers hold."""

    server: grpc.Server
    port: int
    release: threading.Event = field(default_factory=threading.Event)
    taken: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def _draining_server() -> Iterator[Draining]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=SLOW_CALLS + 4))
    port = server.add_insecure_port("127.0.0.1:0")
    state = Draining(server, port)

    def slow(request: bytes, context: grpc.ServicerContext) -> bytes:
        with state.lock:
            state.taken += 1
        state.release.wait(10)
        return b"answered " + request

    def fast(request: bytes, context: grpc.ServicerContext) -> bytes:
        return b"fast " + request

    handlers = {
        "Slow": grpc.unary_unary_rpc_method_handler(slow),  # bytes in, bytes out: no (de)serializers
        "Fast": grpc.unary_unary_rpc_method_handler(fast),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.start()
    try:
        yield state
    finally:
        state.release.set()
        server.stop(0)


def _call(exchange_id: str, start_us: int, method: str, payload: bytes) -> Exchange:
    request = Request("POST", "http", "drain.internal", 50051, f"/{SERVICE}/{method}", http_version="HTTP/2.0",
                      headers=[("content-type", "application/grpc"), ("te", "trailers")],
                      body=join_messages([GrpcMessage(payload)]))
    return Exchange(exchange_id, exchange_id, start_us, request, Response(200, http_version="HTTP/2.0"))


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def _stop_gracefully_once_the_slow_calls_are_taken(target: Draining) -> None:
    """Stops the server while its handlers hold every Slow call, then lets them answer: the GOAWAY (grpcio sends
    it on stop) reaches the replayer before the answers, whose handlers wait until the server stopped listening."""
    wait_until(lambda: target.taken == SLOW_CALLS, "the slow calls to reach their handlers", timeout_s=10)
    target.server.stop(grace=10)
    wait_until(lambda: _refuses_connections(target.port), "the stopping server to refuse connections", timeout_s=10)
    target.release.set()


def test_calls_in_flight_when_a_grpc_server_stops_gracefully_keep_their_answers() -> None:
    """Three slow calls are in flight on one connection when grpcio stops with a grace period: each record is the
    server's answer (grpc-status 0), and the calls due after it stopped fail to connect, as to any server down."""
    exchanges = [_call(f"slow{n}", 0, "Slow", b"slow%d" % n) for n in range(SLOW_CALLS)]
    exchanges += [_call(f"later{n}", 1_500_000, "Fast", b"later%d" % n) for n in range(2)]
    records: list[ReplayRecord] = []
    with _draining_server() as target:
        stopper = threading.Thread(target=_stop_gracefully_once_the_slow_calls_are_taken, args=(target,))
        stopper.start()
        replayer = Replayer([Target("baseline", f"http://127.0.0.1:{target.port}")], sink=records.append)
        run_fast(replayer.run(plan([exchanges])))
        stopper.join(timeout=15)
    by_id = {record.exchange_id: record for record in records}
    for n in range(SLOW_CALLS):
        record = by_id[f"slow{n}"]
        assert record.final and record.final.error is None, record.final
        assert record.response and grpc_status(record.response) == 0
        assert [m.payload for m in split_messages(record.response.body)] == [b"answered slow%d" % n]
    for n in range(2):
        final = by_id[f"later{n}"].final
        assert final and final.error == "refused" and "cannot connect to 127.0.0.1" in (final.error_detail or "")


def _fields(path: str) -> list[tuple[bytes, bytes]]:
    return [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"api.internal"), (b":path", path.encode())]


def _origin(url: str) -> Origin:
    return Origin("127.0.0.1", int(url.rsplit(":", 1)[1]), None)


def test_the_asyncio_pool_reads_a_draining_connection_to_its_end_and_opens_another_for_new_streams() -> None:
    """With a limit of one connection: the connection draining after GOAWAY holds /slow, whose answer waits until
    /next was answered; /next must go to a second connection at once, not wait for the first to close."""
    next_answered = threading.Event()

    def respond(stream: Stream) -> Reply:
        if stream.header(":path") == "/slow":
            return Reply(action="drain", body=b"slow answer", until=next_answered)
        return Reply(body=b"next answer")

    async def replay(url: str) -> tuple[RawAnswer, RawAnswer]:
        pool = Http2Pool(_origin(url), limit=1, connect_timeout=5, read_timeout=10, max_body=1 << 20)
        try:
            slow = pool.request(_fields("/slow"), b"")
            await asyncio.to_thread(wait_until, lambda: observed.streams, "the server to read /slow", timeout_s=10)
            async with asyncio.timeout(5):  # the server holds /slow for up to 10 s
                while pool._least_loaded() is not None:  # until the GOAWAY came: no connection takes a stream
                    await asyncio.sleep(0.01)
                following = await pool.request(_fields("/next"), b"")
            assert not slow.done()  # answered while the first connection still drains
            next_answered.set()
            return await slow, following
        finally:
            next_answered.set()
            pool.close()

    with h2_server(respond) as (url, observed):
        slow, following = asyncio.run(replay(url))
        assert (slow.status, bytes(slow.body)) == (200, b"slow answer")
        assert (following.status, bytes(following.body)) == (200, b"next answer")
        assert [stream.connection for stream in observed.streams] == [0, 1]


def test_the_locust_workers_pool_reads_its_stream_to_the_end_on_a_draining_connection() -> None:
    """`replayer.blocking` (plain blocking sockets here): the stream the GOAWAY covers is answered, the connection
    is not kept, and the next request goes on a new one."""
    with h2_server(lambda stream: Reply(action="drain", body=stream.header(":path").encode(), delay_s=0.05)) as (
        url, observed,
    ):
        pool = BlockingH2Pool(_origin(url), connect_timeout=5, read_timeout=10, max_body=1 << 20)
        try:
            answers = [pool.request(_fields(path), b"") for path in ("/first", "/second")]
        finally:
            pool.close()
    assert [(answer.status, bytes(answer.body)) for answer in answers] == [(200, b"/first"), (200, b"/second")]
    assert [stream.connection for stream in observed.streams] == [0, 1]
