"""`replaydiff inspect`: what a corpus holds, read in one streaming pass.

Endpoints are named as every other command names them: templates learned
from the corpus's own paths (`corpora.endpoints`), which `--endpoints` shows.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from replaydiff.corpora import CorpusReader
from replaydiff.corpora.grpc import outcome_label
from replaydiff.corpora.endpoints import MIN_DISTINCT, RARE_HITS, LearnedEndpoints, learn_endpoints
from replaydiff.diff.report import middle
from replaydiff.mocking import ATTACHMENTS, Attachment, upstream_attachment


@dataclass(slots=True)
class CorpusStats:
    header: dict[str, Any]
    exchanges: int = 0
    first_us: int | None = None
    last_us: int = 0
    sessions: set[str] = field(default_factory=set)
    endpoints: Counter[str] = field(default_factory=Counter)
    endpoint_paths: Counter[str] = field(default_factory=Counter)
    """Distinct recorded paths per endpoint: how much each template merged."""
    learned: LearnedEndpoints = field(default_factory=LearnedEndpoints)
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
            "endpoint_paths": dict(self.endpoint_paths.most_common()),
            "learned_templates": [
                {
                    "template": position.template,
                    "distinct": position.distinct,
                    "exchanges": position.exchanges,
                    "examples": list(position.examples),
                    "kept_literal": sorted(position.literals),
                }
                for position in self.learned.positions
            ],
            "statuses": dict(sorted(self.statuses.items())),
            "complete": self.complete,
            "end": self.end,
        }


def corpus_stats(path: Path) -> CorpusStats:
    reader = CorpusReader(path)
    stats = CorpusStats(header=reader.header)
    requests: Counter[tuple[str, str]] = Counter()
    for exchange in reader:
        stats.exchanges += 1
        if stats.first_us is None:
            stats.first_us = exchange.start_us
        stats.first_us = min(stats.first_us, exchange.start_us)
        stats.last_us = max(stats.last_us, exchange.start_us + exchange.duration_us)
        stats.sessions.add(exchange.session)
        requests[exchange.request.method, exchange.request.path] += 1
        stats.statuses[outcome_label(exchange.response)] += 1
    paths: Counter[str] = Counter()
    for (_, target_path), count in requests.items():
        paths[target_path] += count
    stats.learned = learn_endpoints(paths)
    for (method, target_path), count in requests.items():
        endpoint = stats.learned.endpoint(method, target_path)
        stats.endpoints[endpoint] += count
        stats.endpoint_paths[endpoint] += 1
    stats.complete = reader.complete
    stats.end = reader.end
    return stats


@click.command()
@click.argument("corpus", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
@click.option("--endpoints", "show_endpoints", is_flag=True,
              help="Show the endpoint templates learned from the paths, and how many paths each merged.")
@click.option("--upstream", type=click.Path(path_type=Path, dir_okay=False), metavar="LOG",
              help="A tap's log of the service's dependency calls while CORPUS was recorded: how many calls join "
                   "the corpus's exchanges per dependency, and how (what a mock of them can answer exactly).")
def inspect(corpus: Path, as_json: bool, show_endpoints: bool, upstream: Path | None) -> None:
    """Show what CORPUS holds: exchanges, time span, sessions, endpoints."""
    stats = corpus_stats(corpus)
    attached = upstream_attachment(corpus, upstream) if upstream else None
    if as_json:
        data = stats.to_json()
        if attached is not None:
            data["upstream"] = {dependency: dict(counts) for dependency, counts in sorted(attached.calls.items())}
            data["upstream_by_time"] = not attached.clockless
        click.echo(json.dumps(data, indent=2))
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
    if show_endpoints:
        _print_learned(console, stats)
    counts = ["exchanges", *(["paths"] if show_endpoints else [])]
    table = Table(box=None, pad_edge=False)
    table.add_column("endpoint", no_wrap=True)
    for heading in counts:
        table.add_column(heading, no_wrap=True)
    room = console.width - sum(len(heading) + 2 for heading in counts)  # a name is shortened, never wrapped
    for endpoint, count in stats.endpoints.most_common():
        paths = [str(stats.endpoint_paths[endpoint])] if show_endpoints else []
        table.add_row(middle(endpoint, max(room, 20)), str(count), *paths)
    console.print(table)
    if attached is not None:
        _print_attached(console, upstream, attached)


def _print_attached(console: Console, log: Path | None, attached: Attachment) -> None:
    if not attached.calls:
        console.print(f"upstream   {log}: no call")
    for dependency, counts in sorted(attached.calls.items()):
        how = ", ".join(f"{name} {counts[name]}" for name in ATTACHMENTS if counts[name])
        console.print(f"upstream   {dependency}: {sum(counts.values())} calls ({how})", soft_wrap=True, markup=False)
    if attached.clockless:
        console.print(
            "upstream   calls without a trace id are not attributed by time: the corpus does not say when it was "
            "recorded (no epoch_unix_us in its end record; recorded by an older replaydiff, cut short, or rewritten)",
            soft_wrap=True,
        )


def _print_learned(console: Console, stats: CorpusStats) -> None:
    """The rule's outcome, so a user can check it and override it with `endpoints = [...]` in a rules file."""
    console.print(
        f"endpoints  {len(stats.endpoints)} from {sum(stats.endpoint_paths.values())} distinct paths; "
        "ids inside segments ({id}.json, item-{id}) are parameters, and so is a position under one prefix with "
        f"≥{MIN_DISTINCT} distinct values whose median is seen on ≤{RARE_HITS} exchanges",
        soft_wrap=True,
    )
    if not stats.learned.positions:
        console.print("learned    no high-cardinality position")
    for position in stats.learned.positions:
        kept = f"; kept literal: {', '.join(sorted(position.literals))}" if position.literals else ""
        console.print(
            f"learned    {position.template}  {position.distinct} values over {position.exchanges} exchanges "
            f"(e.g. {', '.join(position.examples)}){kept}",
            soft_wrap=True,
            markup=False,
        )
