"""Corpus write/read throughput against a reference: plain JSON lines compressed as one zstd stream.

The container pays for crash safety (a frame and an fsync per flush interval) and
for typed records; this prints how much, as ratios, so a regression shows up on
any machine.  Run: .venv/bin/python bench/corpus_io.py [N]
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import zstandard

from replaydiff.corpora import CorpusReader, CorpusWriter, Exchange, Request, Response


def _exchanges(count: int) -> list[Exchange]:
    body = json.dumps({"items": [{"id": i, "name": f"item {i}", "price": i * 1.5} for i in range(20)]}).encode()
    return [
        Exchange(
            id=str(i),
            session=f"s{i % 300}",
            start_us=i * 1000,
            request=Request("GET", "http", "shop", 80, f"/api/products/{i}", headers=[("Accept", "*/*")] * 8),
            response=Response(200, headers=[("Content-Type", "application/json")] * 6, body=body),
        )
        for i in range(count)
    ]


def _timed(action) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main(count: int) -> None:
    exchanges = _exchanges(count)
    with tempfile.TemporaryDirectory() as tmp:
        ours, reference = Path(tmp) / "c.jsonl.zst", Path(tmp) / "ref.jsonl.zst"

        def write_ours() -> None:
            with CorpusWriter(ours, source="bench") as writer:
                for exchange in exchanges:
                    writer.write(exchange)

        def write_reference() -> None:
            with open(reference, "wb") as handle, zstandard.ZstdCompressor(level=6).stream_writer(handle) as out:
                for exchange in exchanges:
                    out.write(json.dumps(exchange.to_json()).encode() + b"\n")

        def read_ours() -> None:
            assert sum(1 for _ in CorpusReader(ours)) == count

        def read_reference() -> None:
            with open(reference, "rb") as handle:
                reader = zstandard.ZstdDecompressor().stream_reader(handle)
                data = reader.read()
            assert sum(1 for line in data.splitlines() if json.loads(line)) == count

        rows = [
            ("write", _timed(write_ours), _timed(write_reference)),
            ("read", _timed(read_ours), _timed(read_reference)),
        ]
        print(f"{count} exchanges; ratio = replaydiff container / plain zstd JSON lines (lower is better)")
        for name, mine, ref in rows:
            print(f"  {name:5s} {count / mine:10.0f}/s vs {count / ref:10.0f}/s   ratio {mine / ref:.2f}")
        print(f"  size  {ours.stat().st_size} vs {reference.stat().st_size} bytes   ratio "
              f"{ours.stat().st_size / reference.stat().st_size:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
