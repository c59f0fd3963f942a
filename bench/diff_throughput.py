"""Differ throughput on realistic JSON answers, against deepdiff on every pair, and its memory as results grow.

Printed as rates and ratios so a regression shows on any machine:

- byte-identical pairs/s: baseline and candidate answered the same bytes (goal ≥ 50,000/s). The
  differ decides these by comparing bytes, without parsing, so no ratio is printed: against a
  reference that parses, it would mostly measure `json.loads`;
- same-document pairs/s: the same listing with the per-call timestamp and request id every real
  pair differs in, so both bodies are parsed and walked, as most pairs of a real replay are;
- divergent pairs/s: the same, and every price changed type (goal ≥ 5,000/s);
- for the last two, the same pairs through `DeepDiff` after `json.loads` (what the differ would
  cost calling it on every pair), and the ratio;
- peak memory of a whole `analyze` over N and 4×N streamed exchanges: it must not grow with N.

Run: .venv/bin/python bench/diff_throughput.py [PAIRS]
"""

from __future__ import annotations

import json
import random
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

from deepdiff import DeepDiff

from replaydiff.corpora import Attempt, ReplayRecord, Response
from replaydiff.diff import DiffOptions, analyze
from replaydiff.diff.compare import compare

HEADERS = [("Content-Type", "application/json; charset=utf-8"), ("Cache-Control", "no-store"),
           ("Vary", "Accept-Encoding"), ("Strict-Transport-Security", "max-age=63072000")]  # fmt: skip
GOALS = {"byte-identical": 50_000, "divergent": 5_000}
KINDS = ("byte-identical", "same-document", "divergent")


def listing(rng: random.Random, *, stringly: bool = False) -> dict[str, Any]:
    """A product listing of 12 items with nested stock, about 2.5 KB of JSON, as shops answer."""
    products = [
        {
            "id": n,
            "name": f"{rng.choice(['classic', 'nordic', 'rustic'])} {rng.choice(['kettle', 'tent', 'atlas'])}",
            "category": rng.choice(["books", "coffee", "garden"]),
            "price": f"{n * 1.25:.2f}" if stringly else n * 1.25,
            "currency": "EUR",
            "stock": {"available": n % 17, "warehouse": "ams-1"},
            "tags": ["new", "eco"][: n % 3],
        }
        for n in range(1, 13)
    ]
    return {"page": 1, "pages": 9, "total": 108, "products": products}


def record(target: str, exchange: str, document: dict[str, Any], stamp: int) -> ReplayRecord:
    body = json.dumps({**document, "generated_at": f"2024-05-01T10:00:00.{stamp:06d}Z", "request_id": f"r{stamp}"})
    headers = [*HEADERS, ("X-Request-Id", f"r{stamp}")]
    attempt = Attempt(0, 900, 1000 + stamp % 997, 200)
    return ReplayRecord(exchange, target, "GET /api/products", [attempt], Response(200, headers=headers, body=body.encode()))


def pairs(count: int, kind: str) -> list[tuple[ReplayRecord, ReplayRecord]]:
    """Byte-identical: one answer twice. Same-document: each answer has its own stamp. Divergent: and the
    candidate renders every price as a string."""
    made = []
    for n in range(count):
        document = listing(random.Random(n))
        if kind == "byte-identical":
            made.append((record("baseline", str(n), document, 0), record("candidate", str(n), document, 0)))
            continue
        other = listing(random.Random(n), stringly=kind == "divergent")
        made.append((record("baseline", str(n), document, n), record("candidate", str(n), other, n + 1)))
    return made


def rate(work: Callable[[], None], count: int) -> float:
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


def ours(batch: list[tuple[ReplayRecord, ReplayRecord]]) -> Callable[[], None]:
    def run() -> None:
        for baseline, candidate in batch:
            compare(baseline, candidate)

    return run


def deepdiff_every_pair(batch: list[tuple[ReplayRecord, ReplayRecord]]) -> Callable[[], None]:
    """The reference: parse both bodies and let deepdiff compare them, as the walking skeleton's fallback did."""

    def run() -> None:
        for baseline, candidate in batch:
            assert baseline.response is not None and candidate.response is not None
            DeepDiff(json.loads(baseline.response.body), json.loads(candidate.response.body), view="tree",
                     ignore_type_in_groups=[(int, float)], zip_ordered_iterables=True)  # fmt: skip

    return run


def stream(exchanges: int) -> Iterator[ReplayRecord]:
    """Records as the replayer writes them: the three of an exchange adjacent, bodies made on the fly."""
    rng = random.Random(3)
    document = listing(rng)
    for n in range(exchanges):
        for role, target in enumerate(("baseline", "baseline2", "candidate")):
            yield record(target, str(n), document, n * 3 + role)


SAMPLES = 5_000
"""Latency samples kept per endpoint in the memory run (the default is 50,000): past it, memory stays flat."""


def peak_mib(exchanges: int) -> float:
    tracemalloc.start()
    analyze(stream(exchanges), options=DiffOptions(latency_samples=SAMPLES))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main(count: int) -> None:
    size = len(pairs(1, "byte-identical")[0][0].response.body)  # type: ignore[union-attr]
    print(f"{count:,} pairs per measurement; a listing of 12 products, ~{size:,} B")
    for kind in KINDS:
        batch = pairs(count, kind)
        mine = rate(ours(batch), count)
        goal = GOALS.get(kind)
        verdict = "" if goal is None else "ok" if mine >= goal else f"BELOW GOAL {goal:,}/s"
        if kind == "byte-identical":
            print(f"  {kind:14s} {mine:10,.0f} pairs/s   (decided by comparing bytes: no reference)   {verdict}")
            continue
        sample = max(count // 20, 50)
        reference = rate(deepdiff_every_pair(batch[:sample]), sample)
        print(f"  {kind:14s} {mine:10,.0f} pairs/s   json.loads + deepdiff on every pair {reference:8,.0f}/s   "
              f"ratio {mine / reference:6.1f}×   {verdict}")
    small = 2 * SAMPLES
    first, second = peak_mib(small), peak_mib(4 * small)
    print(f"  memory    analyze() peak {first:.1f} MiB for {small:,} exchanges, {second:.1f} MiB for {4 * small:,} "
          f"(ratio {second / first:.2f}, with {SAMPLES:,} latency samples kept per endpoint)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
