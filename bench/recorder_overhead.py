"""What the recorder costs on top of plain mitmproxy, measured in one run against the same local server.

Three paths to one aiohttp service on 127.0.0.1, each driven by the same
closed-loop aiohttp client at 1 and at 32 concurrent connections:
- `direct`: client → service;
- `mitmdump`: client → plain `mitmdump` reverse proxy → service;
- `record`: client → `replaydiff record` (sanitizing, writing a corpus) → service.

Both proxies run with the same mitmproxy options (`connection_strategy=lazy`,
own confdir). The service answers a JSON list of 40 products, like the demo
shop, and every request carries an Authorization header and a query, so the
sanitizer has real work. Printed: p50/p99 latency, throughput and the proxy
process's CPU time per request for each path, and the ratios record/mitmdump
(goal: at most 1.10). On a shared machine, CPU per request is the steady
measure of cost; latency and throughput move with everyone else's load.

Run: .venv/bin/python bench/recorder_overhead.py [REQUESTS_PER_ROW]   (default 1500)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from replaydiff.corpora.ports import free_port

BIN = Path(sys.executable).parent
CONCURRENCY = (1, 32)
ROUNDS = 3
"""Paths take turns, round after round, and each keeps its best round: on a shared machine, load from
elsewhere only ever slows a round down, so the best round is the closest to the path's own cost."""
_SERVICE = """
import json, sys
from aiohttp import web
items = [{"id": i, "name": f"product {i}", "price": i * 1.5, "tags": ["a", "b"]} for i in range(40)]
body = json.dumps({"items": items})
async def products(request):
    return web.Response(text=body, content_type="application/json")
app = web.Application()
app.add_routes([web.get("/api/products", products)])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""
_LISTENING = re.compile(r"recording (http://127\.0\.0\.1:\d+)")


@dataclass(frozen=True)
class Run:
    latencies_ms: list[float]
    seconds: float
    proxy_cpu_ms: float | None = None
    """CPU time the proxy process spent per request: unlike latency, barely moved by others' load."""

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p99(self) -> float:
        return statistics.quantiles(self.latencies_ms, n=100)[98]

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.seconds


def _wait_accepting(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


@contextmanager
def _process(args: list[str | Path], port: int | None = None) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([str(a) for a in args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if port is not None:
            _wait_accepting(port, process)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=20)


def _cpu_seconds(pid: int) -> float:
    """User plus system time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measured(url: str, clients: int, requests: int, pid: int | None) -> Run:
    before = _cpu_seconds(pid) if pid else 0.0
    run = asyncio.run(_drive(url, clients, requests))
    if pid is None:
        return run
    return Run(run.latencies_ms, run.seconds, (_cpu_seconds(pid) - before) * 1000 / len(run.latencies_ms))


@contextmanager
def _recorder(upstream: str, workdir: Path) -> Iterator[tuple[str, int]]:
    args = [BIN / "replaydiff", "record", "--upstream", upstream, "--listen", "0", "--confdir", workdir / "conf",
            "-o", workdir / "bench.jsonl.zst"]
    with _process(args) as process:
        assert process.stderr is not None
        line = process.stderr.readline().decode()
        match = _LISTENING.search(line)
        if match is None:
            raise RuntimeError(f"replaydiff record did not start: {line}")
        yield match.group(1), process.pid


async def _drive(url: str, clients: int, requests: int) -> Run:
    latencies: list[float] = []
    headers = {"Authorization": "Bearer bench-token-0123456789", "Accept": "application/json"}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client(count: int) -> None:
            for number in range(count):
                started = time.perf_counter()
                async with session.get(f"{url}/api/products?page={number % 7}&api_key=k", headers=headers) as answer:
                    await answer.read()
                latencies.append((time.perf_counter() - started) * 1000)

        await client(min(50, requests))  # warm-up: connections, caches
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(client(requests // clients) for _ in range(clients)))
        return Run(latencies, time.perf_counter() - started)


def main(requests: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        service_port, dump_port = free_port(), free_port()
        service = f"http://127.0.0.1:{service_port}"
        mitmdump = [BIN / "mitmdump", "-q", "--mode", f"reverse:{service}", "--listen-host", "127.0.0.1",
                    "--listen-port", str(dump_port), "--set", f"confdir={workdir / 'dumpconf'}",
                    "--set", "connection_strategy=lazy"]
        with _process([sys.executable, "-c", _SERVICE, str(service_port)], service_port), \
                _process(mitmdump, dump_port) as dump, _recorder(service, workdir) as (recording, recorder_pid):
            paths = {
                "direct": (service, None),
                "mitmdump": (f"http://127.0.0.1:{dump_port}", dump.pid),
                "record": (recording, recorder_pid),
            }
            rounds: dict[tuple[str, int], list[Run]] = {}
            for _ in range(ROUNDS):
                for clients in CONCURRENCY:
                    for name, (url, pid) in paths.items():
                        rounds.setdefault((name, clients), []).append(_measured(url, clients, requests, pid))
            results = {key: min(runs, key=lambda run: run.p50) for key, runs in rounds.items()}
            cpu = {key: min(run.proxy_cpu_ms or 0.0 for run in runs) for key, runs in rounds.items()}
    print(f"{requests} requests per row, best of {ROUNDS} rounds; p50/p99 in ms, throughput in requests/s")
    print(f"{'path':10} {'clients':>7} {'p50':>8} {'p99':>8} {'req/s':>9} {'proxy cpu ms/req':>17}")
    for (name, clients), run in results.items():
        proxy_cpu = f"{cpu[name, clients]:>17.3f}" if name != "direct" else f"{'-':>17}"
        print(f"{name:10} {clients:>7} {run.p50:>8.2f} {run.p99:>8.2f} {run.throughput:>9.0f} {proxy_cpu}")
    print()
    for clients in CONCURRENCY:
        direct, dump, rec = (results[name, clients] for name in ("direct", "mitmdump", "record"))
        added_dump, added_rec = dump.p50 - direct.p50, rec.p50 - direct.p50
        cpu_ratio = cpu["record", clients] / cpu["mitmdump", clients]
        print(
            f"{clients:>2} clients: record/mitmdump cpu per request {cpu_ratio:.2f}, p50 {rec.p50 / dump.p50:.2f}, "
            f"p99 {rec.p99 / dump.p99:.2f}, throughput {rec.throughput / dump.throughput:.2f}; "
            f"p50 added over direct: mitmdump {added_dump:.2f} ms, record {added_rec:.2f} ms"
        )
    summary = {f"{n}@{c}": {"p50": round(r.p50, 3), "cpu": round(cpu[n, c], 3)} for (n, c), r in results.items()}
    print(json.dumps(summary))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1500)
