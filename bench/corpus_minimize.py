"""`replaydiff corpus minimize` on a synthetic 1,000,000-exchange corpus: time, peak RSS, reduction, coverage.

The corpus looks like a busy day of a shop API: about 100,000 sessions of 1 to 19 exchanges, interleaved in
time, over 30 endpoints of very unequal traffic, with the rare things minimization must keep: a response
shape with an extra field on one exchange in 20,000, 404s on one in 1,000, 500s on one in 100,000, a debug
header on one in 200,000, a coupon code used once in 100,000 cart quotes.

Reference, measured in the same run: `replaydiff inspect` of the same file (one streaming read that decodes
every exchange); minimize reads the file twice and works out shapes, so its time is printed as a ratio to
that read. Peak RSS is each child's own `ru_maxrss` (wait4). Goals (issue 18): a few minutes, ≤ 500 MB,
coverage 100 %.

    .venv/bin/python bench/corpus_minimize.py [--exchanges N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import machine_note  # noqa: E402

from replaydiff.corpora import CorpusWriter, Exchange, Request, Response  # noqa: E402

ENDPOINTS = 30
REPLAYDIFF = [sys.executable, "-m", "replaydiff.cli"]


def _exchange(rng: random.Random, number: int, session: str, start_us: int) -> Exchange:
    endpoint = min(int(rng.paretovariate(1.2)) - 1, ENDPOINTS - 1)  # a few endpoints carry most traffic
    headers = [("Host", "shop.internal"), ("Accept", "application/json"), ("Authorization", f"Bearer {session}")]
    if rng.random() < 1 / 200_000:
        headers.append(("X-Debug", "1"))
    status = 404 if rng.random() < 1 / 1000 else 500 if rng.random() < 1 / 100_000 else 200
    answer: dict[str, object] = {"id": number, "name": f"item {number % 977}", "price": number % 97 + 0.5}
    if rng.random() < 1 / 20_000:
        answer["promotion"] = {"code": "X", "until": "2026-12-31"}
    if status != 200:
        answer = {"error": "not found" if status == 404 else "internal"}
    if endpoint % 10 == 9:  # a few POST endpoints with a categorical coupon
        coupon = "RARE-XL" if rng.random() < 1 / 100_000 else rng.choice("ABCDE")
        request = Request("POST", "http", "shop.internal", 80, f"/api/e{endpoint}", headers=headers,
                          body=orjson.dumps({"coupon": coupon, "items": [{"sku": number % 5000, "qty": 1}]}))
    else:
        query = f"page={rng.randint(1, 50)}" + ("&sort=" + rng.choice(("asc", "desc")) if rng.random() < 0.3 else "")
        request = Request("GET", "http", "shop.internal", 80, f"/api/e{endpoint}/{number % 100_000}", query=query,
                          headers=headers)
    return Exchange(str(number), session, start_us, request,
                    Response(status, headers=[("Content-Type", "application/json")], body=orjson.dumps(answer)),
                    duration_us=rng.randint(500, 20_000))  # fmt: skip


def synthetic_day(path: Path, exchanges: int, seed: int = 18) -> Path:
    """Sessions arrive one after another and overlap: `ACTIVE` of them are open at any time, each sending
    its next request in turn, so sessions interleave in the file as they do in a recording."""
    rng = random.Random(seed)
    active: list[tuple[str, int]] = []  # (session key, requests left)
    started = 0
    with CorpusWriter(path, source="bench: synthetic day") as writer:
        for number in range(exchanges):
            while len(active) < 200:
                active.append((f"client-{started}", rng.randint(1, 19)))
                started += 1
            slot = rng.randrange(len(active))
            session, left = active[slot]
            writer.write(_exchange(rng, number, session, number * 80))
            if left == 1:
                active[slot] = active[-1]
                active.pop()
            else:
                active[slot] = (session, left - 1)
    return path


def _measured(command: list[str]) -> tuple[str, float, float]:
    """stdout+stderr, wall seconds, peak RSS in MB of the child itself."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:5])}… failed ({process.returncode}):\n{output[-2000:]}")
    return output, elapsed, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exchanges", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="Directory to keep the corpora in (default: a temporary one).")
    args = parser.parse_args()
    print(machine_note())
    with tempfile.TemporaryDirectory(prefix="replaydiff-bench-") as scratch:
        directory = args.keep or Path(scratch)
        directory.mkdir(parents=True, exist_ok=True)
        corpus = directory / "day.jsonl.zst"
        started = time.perf_counter()
        synthetic_day(corpus, args.exchanges)
        print(f"generated {args.exchanges:,} exchanges ({corpus.stat().st_size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - started:.0f} s")  # fmt: skip
        _, read_s, read_mb = _measured([*REPLAYDIFF, "inspect", str(corpus)])
        output, minimize_s, minimize_mb = _measured(
            [*REPLAYDIFF, "corpus", "minimize", str(corpus), "-o", str(directory / "nightly.jsonl.zst")]
        )
    print(output.strip())
    sizes = re.search(r"(\d+) exchanges in (\d+) sessions → (\d+) exchanges in (\d+) sessions", output)
    coverage = re.search(r"coverage: (\d+) items before, (\d+) after", output)
    assert sizes and coverage, output
    before, after = int(sizes[1]), int(sizes[3])
    print()
    print("| figure | value |")
    print("|---|---|")
    print(f"| reference: `inspect` (one streaming read) | {read_s:.1f} s, peak RSS {read_mb:.0f} MB |")
    print(f"| `corpus minimize` | {minimize_s:.1f} s = {minimize_s / read_s:.2f}× the read; peak RSS {minimize_mb:.0f} MB |")
    print(f"| reduction | {before:,} → {after:,} exchanges = {before / after:.0f}× fewer ({sizes[2]} → {sizes[4]} sessions) |")
    print(f"| coverage kept | {coverage[2]} of {coverage[1]} items = {int(coverage[2]) / int(coverage[1]):.1%} |")


if __name__ == "__main__":
    main()
