"""`corpus merge`, `corpus split` and `corpus filter`: keep a rolling corpus from many recordings."""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from replaydiff.corpora import CorpusReader
from replaydiff.curation.coverage import endpoint_of_exchange
from replaydiff.curation.sample import session_rank
from replaydiff.curation.streams import CuratedWriter, check_output, exchanges, session_of
from replaydiff.errors import UserError
from replaydiff.replayer.plan import Selection

MERGE_GAP_US = 1_000_000
"""Between one recording's last exchange and the next recording's first, when merged one after another."""
SplitBy = Literal["endpoint", "session", "hour"]


def _renamed(record: dict[str, Any], number: int, shift_us: int) -> dict[str, Any]:
    """Sessions and ids of the second and later inputs get `@N`, so equal keys of two recordings stay apart."""
    if number == 1 and not shift_us:
        return record
    record = {**record, "start_us": int(record["start_us"]) + shift_us}
    if number > 1:
        record["id"] = f"{record['id']}@{number}"
        record["session"] = f"{record['session']}@{number}" if record.get("session") else ""
    return record


def _input_records(path: Path) -> Iterator[dict[str, Any]]:
    return (exchange.to_json() for exchange in exchanges(path))


def merge(inputs: list[Path], output: Path, *, overlay: bool = False) -> int:
    """One recording after another (each shifted to start after the previous one ended), or with `overlay`
    all starting together, interleaved by start time, which replays them as concurrent traffic."""
    check_output(output, *inputs)
    curation = {"job": "merge", "overlay": overlay}
    with CuratedWriter(output, sources=inputs, curation=curation) as writer:
        if overlay:
            streams = [
                (_renamed(record, number, 0) for record in _input_records(path))
                for number, path in enumerate(inputs, 1)
            ]
            for record in heapq.merge(*streams, key=lambda r: int(r["start_us"])):
                writer.write(record)
        else:
            shift = 0
            for number, path in enumerate(inputs, 1):
                end = shift
                for record in _input_records(path):
                    record = _renamed(record, number, shift)
                    end = max(end, record["start_us"] + int(record.get("duration_us", 0)))
                    writer.write(record)
                shift = end + MERGE_GAP_US
        return writer.count


def _file_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9{}._-]+", "_", text).strip("_") or "root"


@dataclass(frozen=True, slots=True)
class SplitPart:
    path: Path
    exchanges: int


def split(corpus: Path, directory: Path, *, by: SplitBy, parts: int = 8) -> list[SplitPart]:
    """Files in `directory`, one per endpoint, per hour of the recording, or `parts` files of whole sessions."""
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{directory}: exists and is not a directory; give a directory for the parts")
    directory.mkdir(parents=True, exist_ok=True)
    created = _created(corpus) if by == "hour" else datetime.min
    writers: dict[str, CuratedWriter] = {}
    stem = corpus.name.removesuffix(".zst").removesuffix(".jsonl")
    try:
        for exchange in exchanges(corpus):
            if by == "endpoint":
                name = _file_name(endpoint_of_exchange(exchange))
            elif by == "session":
                name = f"part-{int(session_rank(0, session_of(exchange)) * parts) + 1:03d}-of-{parts:03d}"
            else:
                when = created + timedelta(microseconds=exchange.start_us)
                name = when.strftime("%Y-%m-%dT%H")
            writer = writers.get(name)
            if writer is None:
                path = directory / f"{stem}.{name}.jsonl.zst"
                check_output(path, corpus)
                writer = writers[name] = CuratedWriter(path, sources=[corpus], curation={"job": "split", "by": by})
            writer.write(exchange.to_json())
    finally:
        for writer in writers.values():
            writer.close()
    return [SplitPart(w.path, w.count) for _, w in sorted(writers.items())]


def _created(corpus: Path) -> datetime:
    created = CorpusReader(corpus).header.get("created")
    try:
        return datetime.fromisoformat(str(created))
    except ValueError:
        raise UserError(
            f"{corpus}: its header has no valid `created` time ({created!r}); split --by hour needs one"
        ) from None


def filter_corpus(corpus: Path, output: Path, patterns: tuple[str, ...]) -> tuple[int, int]:
    """The exchanges the replay's `--filter` would select (one definition: `Selection.matches`)."""
    check_output(output, corpus)
    selection = Selection(filters=patterns)
    total = 0
    with CuratedWriter(output, sources=[corpus], curation={"job": "filter", "filters": list(patterns)}) as writer:
        for exchange in exchanges(corpus):
            total += 1
            if selection.matches(exchange, endpoint_of_exchange(exchange)):
                writer.write(exchange.to_json())
        return total, writer.count
