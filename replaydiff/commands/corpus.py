"""`replaydiff inspect`: what a corpus holds, read in one streaming pass."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from replaydiff.corpora import CorpusReader, endpoint_of


@dataclass(slots=True)
class CorpusStats:
    header: dict[str, Any]
    exchanges: int = 0
    first_us: int | None = None
    last_us: int = 0
    sessions: set[str] = field(default_factory=set)
    endpoints: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    complete: bool = False
    end: dict[str, Any] = field(default_factory=dict)

    @property
    def span_s(self) -> float:
        return 0.0 if self.first_us is None else (self.last_us - self.first_us) / 1e6

    def to_json(self) -> dict[str, Any]:
        return {
            "header": self.header,
            "exchanges": self.exchanges,
            "span_s": round(self.span_s, 3),
            "sessions": len(self.sessions),
            "endpoints": dict(self.endpoints.most_common()),
            "statuses": dict(sorted(self.statuses.items())),
            "complete": self.complete,
            "end": self.end,
        }


def corpus_stats(path: Path) -> CorpusStats:
    reader = CorpusReader(path)
    stats = CorpusStats(header=reader.header)
    for exchange in reader:
        stats.exchanges += 1
        if stats.first_us is None:
            stats.first_us = exchange.start_us
        stats.first_us = min(stats.first_us, exchange.start_us)
        stats.last_us = max(stats.last_us, exchange.start_us + exchange.duration_us)
        stats.sessions.add(exchange.session)
        stats.endpoints[endpoint_of(exchange.request.method, exchange.request.path)] += 1
        stats.statuses[str(exchange.response.status) if exchange.response else "error"] += 1
    stats.complete = reader.complete
    stats.end = reader.end
    return stats


@click.command()
@click.argument("corpus", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def inspect(corpus: Path, as_json: bool) -> None:
    """Show what CORPUS holds: exchanges, time span, sessions, endpoints."""
    stats = corpus_stats(corpus)
    if as_json:
        click.echo(json.dumps(stats.to_json(), indent=2))
        return
    console = Console()
    header = stats.header
    console.print(f"[bold]{corpus}[/]  ({header.get('format')}, created {header.get('created', '?')})", soft_wrap=True)
    console.print(f"source     {header.get('source', '?')}", soft_wrap=True)
    if sanitizer := header.get("sanitizer"):
        console.print(f"sanitizer  {sanitizer.get('policy', '?')} (digest {str(sanitizer.get('digest', '?'))[:12]})")
    if fired := stats.end.get("sanitizer", {}).get("fired"):
        console.print("sanitized  " + ", ".join(f"{rule} ×{count}" for rule, count in sorted(fired.items())))
    console.print(f"exchanges  {stats.exchanges}")
    console.print(f"time span  {stats.span_s:.1f} s")
    console.print(f"sessions   {len(stats.sessions)}")
    console.print("statuses   " + ", ".join(f"{s} ×{n}" for s, n in sorted(stats.statuses.items())))
    if not stats.complete:
        console.print("[yellow]the file was not closed cleanly; complete records were kept[/]")
    table = Table("endpoint", "exchanges", box=None, pad_edge=False)
    for endpoint, count in stats.endpoints.most_common():
        table.add_row(endpoint, str(count))
    console.print(table)
