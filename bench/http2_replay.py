"""HTTP/2 and gRPC replay rates against references measured in the same run (issue 15).

(a) HTTP/2: `replaydiff replay --concurrency N` of a synthetic HTTP/2 corpus
(h2c prior knowledge, GETs of one small file), all three targets on one local
server, against `h2load` (nghttp2-client) on the same server with the same
connections and streams: the replay opens up to `HTTP2_CONNECTIONS` (4)
connections per target, so 12, carrying 3 N streams at once; h2load gets
`-c 12 -m N/4`. Only answered requests (2xx/3xx) count for both. The servers:
`nghttpd` (nghttp2-server, C: far cheaper per request than any Python client,
so h2load's rate is the server's and the client is what is measured),
`granian` (PyPI: a Rust server on hyper, here running a small ASGI app: how a
Python service may serve HTTP/2), `h2` (`fixtures.py h2`: a Python server on
h2) and `hypercorn` (PyPI: the common Python HTTP/2 server, so slow per request
that every client gets its rate: to HTTP/2 what aiohttp is to HTTP/1.1 in
`replay_throughput.py`, the server issue 4 stated its wrk goal against). granian and hypercorn install
once into cached venvs (`tests.apps`). Beside them, the ceiling of any Python
client: `h2_bare_client.py`, a bare uvloop loop of pre-encoded GETs, the same
connections and streams as h2load. Goal: at least 0.5× h2load. Against granian
and hypercorn, the same replay in HTTP/1.1 (`--http1`, same corpus and server):
what HTTP/2 costs the replay beside HTTP/1.1. Last, per
server, what that goal leaves per request on one core (2 / the h2load rate),
beside what no replay can skip: reading and planning the corpus and writing a
result record per answer (timed in this process on the replay's own records),
and how often the bare loop sends one (against nghttpd, which answers faster
than any Python client asks, that is the framing's own cost).

(b) gRPC unary, against two servers each in a process of its own: the demo's
grpcio catalog (`replaydiff.demo.grpc_catalog`, a thread pool) and `grpc-aio`
(`fixtures.py`: a grpc.aio server answering fixed bytes, several times cheaper
per call), `GetItem` calls replayed from a corpus of framed
requests, against a plain `grpc.aio` client loop in a process of its own:
3 N coroutines each awaiting one call after another on one channel, the same
request bytes (no (de)serialization on either side); and a grpc.aio loop making
the replay's very calls (N coroutines, each call to 3 channels at once). Only
calls answered `grpc-status 0` count. Goal: at least 1× the grpc.aio loop. Both
clients' CPU time per call is printed too: the catalog (Python grpcio, one
core) sets the rate of either client, so there the CPU says which is cheaper.

Run: .venv/bin/python bench/http2_replay.py [--exchanges N] [--concurrency N] [--parts h2,grpc]
     [--servers nghttpd,granian,h2,hypercorn] [--grpc-servers catalog,grpc-aio]
(`make bench` installs nghttp2-client and nghttp2-server first.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from replaydiff.corpora import CorpusReader, CorpusWriter, Exchange, Request, Response, ResultsReader, ResultsWriter
from replaydiff.corpora.grpc import GrpcMessage, grpc_status, join_messages
from replaydiff.corpora.ports import free_port
from replaydiff.replayer.client import HTTP2_CONNECTIONS
from replaydiff.replayer.plan import plan

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.apps: the cached installs
from fixtures import fast_server, machine_note, synthetic_corpus, timed_run  # noqa: E402

DURATION_S = 10
PATH = "/item.json"
BODY = b'{"id": 1, "name": "item 1"}'


@contextlib.contextmanager
def serving(command: list[str], port: int, cwd: Path | None = None) -> Iterator[str]:
    """`command`, a server listening on `port`, in a process group of its own until the block ends: its base URL.
    The whole group is killed: granian serves from worker processes that outlive a killed parent (and then
    take CPU from every later measurement)."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        _wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def nghttpd(tmp: Path) -> contextlib.AbstractContextManager[str]:
    """nghttpd serving one small file over h2c."""
    root = tmp / "www"
    root.mkdir(exist_ok=True)
    (root / PATH.lstrip("/")).write_bytes(BODY)
    port = free_port()
    return serving(["nghttpd", "--no-tls", "-d", str(root), str(port)], port)


ASGI_APP = f"""
BODY = {BODY!r}
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({{"type": "http.response.start", "status": 200, "headers": HEADERS}})
        await send({{"type": "http.response.body", "body": BODY}})
"""
ASGI_SERVERS = {
    "granian": ("granian", "2.8.7", ["--interface", "asgi", "--http", "auto", "--workers", "1", "--no-ws",
                                     "--host", "127.0.0.1", "--port", "{port}", "h2app:app"]),
    "hypercorn": ("hypercorn", "0.18.0", ["--bind", "127.0.0.1:{port}", "--config", "hypercorn.toml", "h2app:app"]),
}
"""Third-party HTTP/2 servers (h2c with prior knowledge) running `ASGI_APP`: package, release, arguments. Both
also serve HTTP/1.1 on the same port, so the same replay in HTTP/1.1 (`--http1`) is measured beside."""


def asgi_server(name: str, tmp: Path) -> contextlib.AbstractContextManager[str]:
    """`ASGI_SERVERS[name]` serving `ASGI_APP` from `tmp`."""
    from tests.apps import installed

    package, version, arguments = ASGI_SERVERS[name]
    executable = installed(package, version)
    (tmp / "h2app.py").write_text(ASGI_APP)
    # hypercorn ends a connection with GOAWAY after 1,000 requests by default, and h2load does not reconnect
    (tmp / "hypercorn.toml").write_text("keep_alive_max_requests = 1000000000\n")
    port = free_port()
    return serving([str(executable), *(a.format(port=port) for a in arguments)], port, cwd=tmp)


def http2_server(name: str, tmp: Path) -> contextlib.AbstractContextManager[str]:
    if name == "nghttpd":
        return nghttpd(tmp)
    if name in ASGI_SERVERS:
        return asgi_server(name, tmp)
    return fast_server(name)


@contextlib.contextmanager
def grpc_catalog() -> Iterator[str]:
    """The demo's catalog (baseline and candidate) in a process of its own, until its stdin closes: the baseline."""
    process = subprocess.Popen([sys.executable, "-m", "replaydiff.demo.grpc_catalog"], stdout=subprocess.PIPE,
                               stdin=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        yield json.loads(process.stdout.readline())["baseline"]
    finally:
        process.kill()
        process.wait()


def _wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass(frozen=True)
class Rate:
    per_s: float
    cpu_us: float
    """CPU time (user + system) of the client's process per answered call, its start-up included."""


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def replay_rate(corpus: Path, url: str, concurrency: int, tmp: Path, *, grpc: bool = False,
                http1: bool = False) -> Rate:
    """`http1`: the HTTP/2 corpus sent in HTTP/1.1 (`--http1`)."""
    output = tmp / ("results-http1.jsonl.zst" if http1 else "results.jsonl.zst")
    cpu_before = children_cpu_s()
    timed_run([sys.executable, "-m", "replaydiff.cli", "replay", str(corpus), "--baseline", url, "--candidate", url,
               "--concurrency", str(concurrency), "--no-correlate", "-o", str(output), *(["--http1"] if http1 else [])])
    cpu_s = children_cpu_s() - cpu_before
    reader = ResultsReader(output)
    if grpc:
        answered = sum(1 for record in reader if record.response and grpc_status(record.response) == 0)
    else:
        answered = sum(1 for record in reader if record.final and record.final.status and record.final.status < 400)
    return Rate(answered / reader.end["elapsed_s"], cpu_s / max(answered, 1) * 1e6)


def bookkeeping_us(corpus: Path, results: Path, targets: int = 3) -> float:
    """CPU per request of what any replay does besides the HTTP/2 work: reading and planning the corpus (once
    per exchange, shared by its `targets` requests) and writing one result record per answer, timed here in
    this process over the corpus and the records of a replay just made."""
    started = time.process_time()
    exchanges = sum(1 for _ in plan([CorpusReader(corpus)]))
    read_us = (time.process_time() - started) / exchanges * 1e6
    records = list(ResultsReader(results))
    started = time.process_time()
    with ResultsWriter(results.with_name("rewritten.jsonl.zst")) as writer:
        for record in records:
            writer.write(record)
    write_us = (time.process_time() - started) / len(records) * 1e6
    return read_us / targets + write_us


def h2load_rate(url: str, connections: int, streams: int) -> float:
    result, _ = timed_run(["h2load", "-c", str(connections), "-m", str(streams), "-D", str(DURATION_S), url + PATH],
                          timeout=DURATION_S * 3)
    finished = re.search(r"finished in ([\d.]+)(us|ms|s)", result.stdout)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx", result.stdout)
    assert finished and codes, result.stdout
    seconds = float(finished.group(1)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[finished.group(2)]
    return (int(codes.group(1)) + int(codes.group(2))) / seconds


def bare_client_rate(url: str, connections: int, streams: int) -> float:
    result, _ = timed_run([sys.executable, str(Path(__file__).parent / "h2_bare_client.py"), url + PATH,
                           str(connections), str(streams), str(DURATION_S)], timeout=DURATION_S * 3)
    return float(result.stdout.strip())


def grpc_corpus(path: Path, count: int, sessions: int = 500) -> tuple[Path, bytes]:
    from replaydiff.demo.grpc_catalog import message_classes

    payload = message_classes()["ItemRequest"](sku="sku-3").SerializeToString()
    body = join_messages([GrpcMessage(payload)])
    with CorpusWriter(path, source="bench") as writer:
        for i in range(count):
            request = Request("POST", "http", "catalog.internal", 50051, "/shop.Catalog/GetItem",
                              http_version="HTTP/2.0", body=body,
                              headers=[("content-type", "application/grpc"), ("te", "trailers")])
            writer.write(Exchange(str(i), f"s{i % sessions}", i * 1000, request, Response(200)))
    return path, payload


def grpc_aio_rate(url: str, loops: int, payload: bytes, *, fan_out: int = 1) -> Rate:
    """The grpc.aio loop, in a process of its own (as the replay is)."""
    cpu_before = children_cpu_s()
    result, _ = timed_run([sys.executable, __file__, "--aio-client", url, str(loops), payload.hex(), str(fan_out)],
                          timeout=DURATION_S * 3)
    per_s = float(result.stdout.strip())
    return Rate(per_s, (children_cpu_s() - cpu_before) / max(per_s * DURATION_S, 1) * 1e6)


async def _aio_client(url: str, loops: int, payload: bytes, fan_out: int) -> float:
    """`loops` coroutines, each making one call after another on each of `fan_out` channels at once (awaiting
    them all, as the replay awaits every target's answer before a session's next request)."""
    import grpc

    ok = 0
    # a channel of its own per target (grpc would otherwise share one connection between same-address channels)
    channels = [grpc.aio.insecure_channel(url.removeprefix("http://"), options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(fan_out)]
    calls = [channel.unary_unary("/shop.Catalog/GetItem") for channel in channels]  # bytes: no (de)serialization
    for channel in channels:
        await channel.channel_ready()
    end = time.perf_counter() + DURATION_S

    async def one(call: grpc.aio.UnaryUnaryMultiCallable) -> None:
        nonlocal ok
        with contextlib.suppress(grpc.aio.AioRpcError):
            await call(payload)
            ok += 1

    async def loop() -> None:
        while time.perf_counter() < end:
            if fan_out == 1:
                await one(calls[0])
            else:
                await asyncio.gather(*(one(call) for call in calls))

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(loops)))
    elapsed = time.perf_counter() - started
    for channel in channels:
        await channel.close()
    return ok / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--parts", default="h2,grpc")
    parser.add_argument("--servers", default="nghttpd,granian,h2,hypercorn",
                        help="HTTP/2 servers for part (a), comma-separated: nghttpd, granian, h2, hypercorn")
    parser.add_argument("--grpc-servers", default="catalog,grpc-aio",
                        help="gRPC servers for part (b): the demo's catalog (grpcio, a thread pool), grpc-aio "
                             "(fixtures.py: a grpc.aio server answering fixed bytes)")
    parser.add_argument("--aio-client", nargs=4, metavar=("URL", "LOOPS", "PAYLOAD_HEX", "FAN_OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.aio_client:
        url, loops, payload, fan_out = args.aio_client
        print(asyncio.run(_aio_client(url, int(loops), bytes.fromhex(payload), int(fan_out))))
        return
    parts = set(args.parts.split(","))
    connections = 3 * HTTP2_CONNECTIONS
    streams = max(1, 3 * args.concurrency // connections)
    print(f"replay --concurrency {args.concurrency} × 3 targets; {machine_note()}")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        if "h2" in parts:
            missing = [tool for tool in ("h2load", "nghttpd") if not shutil.which(tool)]
            if missing:
                raise SystemExit(f"{', '.join(missing)} missing: run `make bench` (it installs nghttp2-client and "
                                 "nghttp2-server) or apt-get install them")
            corpus = synthetic_corpus(tmp / "h2.jsonl.zst", count=args.exchanges, sessions=500,
                                      http_version="HTTP/2.0", path_of=PATH)
            print(f"(a) HTTP/2, {args.exchanges} exchanges; h2load -c {connections} -m {streams}, {DURATION_S} s")
            for server in args.servers.split(","):
                with http2_server(server, tmp) as url:
                    replay = replay_rate(corpus, url, args.concurrency, tmp).per_s
                    h2load = h2load_rate(url, connections, streams)
                    bare = bare_client_rate(url, connections, streams)
                    http1 = (replay_rate(corpus, url, args.concurrency, tmp, http1=True).per_s
                             if server in ASGI_SERVERS else None)
                print(f"  {server:9s} replaydiff replay {replay:9,.0f} req/s   h2load {h2load:9,.0f} req/s"
                      f"   ÷ h2load {replay / h2load:5.2f} (goal ≥ 0.5)", flush=True)
                print(f"  {server:9s} bare Python loop  {bare:9,.0f} req/s   ÷ h2load {bare / h2load:5.2f} (the "
                      f"ceiling of a Python client); the replay ÷ it {replay / bare:5.2f}", flush=True)
                if http1 is not None:
                    print(f"  {server:9s} the same replay in HTTP/1.1 (--http1) {http1:9,.0f} req/s; in HTTP/2 ÷ it "
                          f"{replay / http1:5.2f} (what HTTP/2 costs the replay beside HTTP/1.1)", flush=True)
                floor_us = bookkeeping_us(corpus, tmp / "results.jsonl.zst")
                print(f"  {server:9s} per request, on one core: the goal leaves {2e6 / h2load:5.1f} µs; reading the "
                      f"corpus and writing the results take {floor_us:4.1f} µs; the bare loop sends one every "
                      f"{1e6 / bare:4.1f} µs", flush=True)
        if "grpc" in parts:
            count = max(1000, args.exchanges // 2)  # about as long as the grpc.aio loop runs: start-ups weigh alike
            corpus, payload = grpc_corpus(tmp / "grpc.jsonl.zst", count)
            calls_at_once = 3 * args.concurrency
            print(f"(b) gRPC unary GetItem, {count} exchanges; grpc.aio loop with {calls_at_once} calls at once, "
                  f"{DURATION_S} s")
            for server in args.grpc_servers.split(","):
                with (grpc_catalog() if server == "catalog" else fast_server(server)) as url:
                    replay = replay_rate(corpus, url, args.concurrency, tmp, grpc=True)
                    aio = grpc_aio_rate(url, calls_at_once, payload)
                    aio_fan_out = grpc_aio_rate(url, args.concurrency, payload, fan_out=3)
                print(f"  {server:8s} replaydiff replay {replay.per_s:10,.0f} calls/s   grpc.aio {aio.per_s:10,.0f} "
                      f"calls/s   ÷ grpc.aio {replay.per_s / aio.per_s:5.2f} (goal ≥ 1)", flush=True)
                print(f"  {server:8s} replaydiff replay {replay.per_s:10,.0f} calls/s   grpc.aio × 3 channels "
                      f"{aio_fan_out.per_s:10,.0f} calls/s   ÷ {replay.per_s / aio_fan_out.per_s:5.2f} (the same "
                      f"calls: {args.concurrency} at once, each to 3 targets)", flush=True)
                print(f"  {server:8s} client CPU per call (start-up included): replay {replay.cpu_us:.0f} µs, grpc.aio "
                      f"{aio.cpu_us:.0f} µs, grpc.aio × 3 channels {aio_fan_out.cpu_us:.0f} µs; ÷ grpc.aio "
                      f"{replay.cpu_us / aio.cpu_us:.2f}", flush=True)

if __name__ == "__main__":
    main()
