"""Dependency mocks: answer latency against the forwarding tap, and lookup cost against the recording's size.

Part 1, in one run: the same calls (same trace ids) through `replaydiff tap` forwarding to a local aiohttp
server (recording them), then through `replaydiff tap --mock` answering from that recording. Prints
p50/p99 per call and calls/s at concurrency 1 and 16, and the ratios mock / forwarding.

Part 2: a `MockRecording` of N synthetic calls (N = 10k, 100k, 1M; each in a fresh process): resident memory
it adds (before and after building it, in that process), and the time per lookup (exact answers, and misses that fall
through to the recording-wide indexes). Lookup time should stay flat as N grows: the index is by
(exchange, dependency), never a scan.

Run: .venv/bin/python bench/mock_upstream.py [CALLS] [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.fixtures import machine_note  # noqa: E402
from tests.servers import serve, stock_app  # noqa: E402  (real aiohttp servers on ephemeral ports)


def _traceparent(i: int) -> dict[str, str]:
    return {"traceparent": f"00-{i:024x}0000000a-{i + 1:016x}-01"}


async def _latencies(base: str, count: int, concurrency: int) -> tuple[list[float], float]:
    samples: list[float] = []
    async with httpx.AsyncClient(base_url=base, trust_env=False) as client:

        async def worker(offset: int) -> None:
            for i in range(offset, count, concurrency):
                started = time.perf_counter()
                answer = await client.get(f"/stock/{i}", headers=_traceparent(i))
                answer.raise_for_status()
                samples.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - started
    return sorted(samples), count / elapsed


def _pct(samples: list[float], q: float) -> float:
    return samples[min(len(samples) - 1, int(q * len(samples)))]


class _Tap:
    def __init__(self, arguments: list[str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "replaydiff.cli", "tap", *arguments],
                                     stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        found = re.search(r"inventory (http://[\d.:]+)", line)
        assert found, f"the tap did not start: {line}"
        self.url = found.group(1)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        _, rest = self.proc.communicate(timeout=30)
        return rest.strip()


def latency(count: int) -> None:
    print(f"Part 1: {count} calls per row; latency per call in ms (client → tap → answer)")
    with tempfile.TemporaryDirectory() as tmp:
        rows: dict[tuple[str, int], tuple[list[float], float]] = {}
        with serve(stock_app()) as upstream:
            forwarding = _Tap(["--route", f"inventory={upstream}", "-o", f"{tmp}/rec.jsonl.zst",
                               "--confdir", f"{tmp}/c1"])  # fmt: skip
            try:
                for concurrency in (1, 16):
                    rows[("forward", concurrency)] = asyncio.run(_latencies(forwarding.url, count, concurrency))
            finally:
                forwarding.stop()
        mocking = _Tap(["--route", "inventory=@0", "--mock", f"{tmp}/rec.jsonl.zst", "-o", f"{tmp}/m.jsonl.zst",
                        "--confdir", f"{tmp}/c2"])  # fmt: skip
        try:
            for concurrency in (1, 16):
                rows[("mock", concurrency)] = asyncio.run(_latencies(mocking.url, count, concurrency))
        finally:
            said = mocking.stop()
        print(f"  ({said.removeprefix('replaydiff: ')})")
        for concurrency in (1, 16):
            (fwd, fwd_rate), (mock, mock_rate) = rows[("forward", concurrency)], rows[("mock", concurrency)]
            print(
                f"  concurrency {concurrency:2d}: forward p50 {_pct(fwd, .5):6.2f} p99 {_pct(fwd, .99):6.2f} "
                f"{fwd_rate:7.0f}/s | mock p50 {_pct(mock, .5):6.2f} p99 {_pct(mock, .99):6.2f} {mock_rate:7.0f}/s"
                f" | mock/forward p50 {_pct(mock, .5) / _pct(fwd, .5):.2f}x, p99 {_pct(mock, .99) / _pct(fwd, .99):.2f}x,"
                f" rate {mock_rate / fwd_rate:.2f}x"
            )


_CHILD = r"""
import json, os, sys, time
from replaydiff.corpora import Request, Response, UpstreamCall
from replaydiff.recorder.mock import CallRequest, MockRecording
def rss_kb():  # resident now (not the peak, which the imports may have set)
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
size = int(sys.argv[1])
base = rss_kb()
recording = MockRecording()
per_exchange = 3
for i in range(size):
    exchange, ordinal = divmod(i, per_exchange)
    path = "/price" if ordinal == 2 else f"/stock/{i % 5000}"
    body = json.dumps({"sku": i % 5000, "qty": 1}).encode() if ordinal == 2 else b""
    recording.add(UpstreamCall(
        dependency="inventory", method="POST" if ordinal == 2 else "GET", path=path, status=200,
        trace_id=f"{exchange:024x}0000000a",
        request=Request("POST" if ordinal == 2 else "GET", "http", "inventory", 80, path, body=body),
        answer=Response(200, headers=[("Content-Type", "application/json")],
                        body=json.dumps({"sku": i % 5000, "available": i % 17, "warehouse": "ams-1"}).encode()),
    ))
rss = rss_kb() - base
lookups = 100_000
exchanges = size // per_exchange
started = time.perf_counter()
for n in range(lookups):
    exchange = (n * 7919) % exchanges
    i = exchange * per_exchange
    match = recording.answer(f"{exchange:024x}0000000c", 0, CallRequest("inventory", "GET", f"/stock/{i % 5000}", "", b""))
    assert match.how == "exact", match
exact_us = (time.perf_counter() - started) / lookups * 1e6
started = time.perf_counter()
for n in range(lookups):
    match = recording.answer(f"{n + exchanges:024x}0000000c", 0, CallRequest("inventory", "GET", f"/stock/{n % 5000}", "", b""))
    assert match.how == "corpus", match
corpus_us = (time.perf_counter() - started) / lookups * 1e6
print(json.dumps({"rss_kb": rss, "exact_us": exact_us, "corpus_us": corpus_us}))
"""


def lookup(sizes: list[int]) -> None:
    print("Part 2: MockRecording of N calls (3 per exchange), each size in a fresh process")
    for size in sizes:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _CHILD, str(size)], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"  N={size}: failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        figures = json.loads(done.stdout)
        print(
            f"  N={size:>9,}: resident +{figures['rss_kb'] / 1024:7.1f} MB for the recording "
            f"({figures['rss_kb'] * 1024 / max(size, 1):4.0f} B/call), lookup exact "
            f"{figures['exact_us']:5.2f} µs, recording-wide {figures['corpus_us']:5.2f} µs "
            f"(whole child {time.perf_counter() - started:5.1f} s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("calls", nargs="?", type=int, default=2000)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    args = parser.parse_args()
    print(machine_note())
    latency(args.calls)
    lookup([int(size) for size in args.sizes.split(",") if size])


if __name__ == "__main__":
    main()
