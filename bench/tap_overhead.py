"""Latency the tap adds to a service's upstream calls: direct vs through `replaydiff tap`, same server, one run.

Prints p50/p99 per call and the ratios. Loopback only, bounded request count.
Run: .venv/bin/python bench/tap_overhead.py [REQUESTS]
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import serve, stock_app  # noqa: E402  (real aiohttp servers on ephemeral ports)


async def _latencies(base: str, count: int, concurrency: int) -> list[float]:
    samples: list[float] = []
    async with httpx.AsyncClient(base_url=base, trust_env=False) as client:
        async def worker(offset: int) -> None:
            for i in range(offset, count, concurrency):
                started = time.perf_counter()
                answer = await client.get(f"/stock/{i}", headers={"traceparent": f"00-{i:032x}-{i:016x}-01"})
                answer.raise_for_status()
                samples.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return sorted(samples)


def _pct(samples: list[float], q: float) -> float:
    return samples[min(len(samples) - 1, int(q * len(samples)))]


def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, serve(stock_app()) as upstream:
        proc = subprocess.Popen(
            [sys.executable, "-m", "replaydiff.cli", "tap", "--route", f"inventory={upstream}",
             "-o", f"{tmp}/up.jsonl.zst", "--confdir", f"{tmp}/conf"],
            stderr=subprocess.PIPE, text=True,
        )
        try:
            assert proc.stderr is not None
            tapped = re.search(r"inventory (http://[\d.:]+)", proc.stderr.readline())
            assert tapped, "the tap did not start"
            print(f"{count} calls per row; latency per call in ms; ratio = through tap / direct")
            for concurrency in (1, 16):
                direct = asyncio.run(_latencies(upstream, count, concurrency))
                through = asyncio.run(_latencies(tapped.group(1), count, concurrency))
                print(
                    f"  concurrency {concurrency:2d}: direct p50 {_pct(direct, .5):6.2f} p99 {_pct(direct, .99):6.2f}"
                    f" | tap p50 {_pct(through, .5):6.2f} p99 {_pct(through, .99):6.2f}"
                    f" | added p50 {_pct(through, .5) - _pct(direct, .5):+.2f} ms,"
                    f" ratio {_pct(through, .5) / _pct(direct, .5):.1f}x"
                )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
