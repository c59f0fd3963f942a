"""`replaydiff corpus …`: curate recorded traffic into a nightly corpus (see `replaydiff.curation`)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from replaydiff.curation.coverage import missing_from, scan
from replaydiff.curation.dedup import dedup as dedup_corpus
from replaydiff.curation.minimize import LATENCY_SAMPLES, Minimized
from replaydiff.curation.minimize import minimize as minimize_corpus
from replaydiff.curation.reshape import filter_corpus, merge as merge_corpora, split as split_corpus
from replaydiff.curation.sample import SampleSpec, sample as sample_corpus
from replaydiff.curation.stats import CorpusStatistics, corpus_statistics

_corpus_argument = click.argument("corpus", type=click.Path(path_type=Path))
_output_option = click.option("-o", "--output", required=True, type=click.Path(path_type=Path, dir_okay=False),
                              help="The curated corpus to write.")  # fmt: skip


@click.group()
def corpus() -> None:
    """Curate recorded traffic: statistics, sampling, deduplication, minimization, merge, split, filter."""


def _ratio(before: int, after: int) -> str:
    return f"{before / after:.1f}× fewer" if after else "nothing kept"


@corpus.command(short_help="Endpoints, sessions, statuses, shapes, sizes and coverage items.")
@_corpus_argument
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON, every shape included.")
@click.option("--shapes", type=click.IntRange(min=0), default=3, show_default=True, metavar="N",
              help="Most common request and response shapes shown per endpoint.")
@click.option("--against", "source", type=click.Path(path_type=Path), metavar="SOURCE",
              help="Also say how many of SOURCE's coverage items this corpus keeps, and which it lacks.")
def stats(corpus: Path, as_json: bool, shapes: int, source: Path | None) -> None:
    """Endpoints, sessions, statuses, request and response shapes, sizes, time span, and coverage items."""
    statistics = corpus_statistics(corpus)
    against = _against(statistics, source) if source else None
    if as_json:
        click.echo(json.dumps({**statistics.to_json(), **({"against": against} if against else {})}, indent=2))
        return
    _print_stats(statistics, shapes)
    if against:
        click.echo(f"coverage of {source}: {against['kept']} of {against['items']} items "
                   f"({against['kept'] / against['items']:.1%})")  # fmt: skip
        for name in against["missing"][:SHOWN_MISSING]:
            click.echo(f"  missing: {name}")
        if len(against["missing"]) > SHOWN_MISSING:
            click.echo(f"  … and {len(against['missing']) - SHOWN_MISSING} more (--json lists them all)")


SHOWN_MISSING = 10


def _against(statistics: CorpusStatistics, source: Path) -> dict[str, Any]:
    full = scan(source)
    missing = missing_from(statistics.coverage, full)
    total = len(full.items())
    return {"source": str(source), "items": total, "kept": total - len(missing), "missing": missing}


def _print_stats(statistics: CorpusStatistics, shapes: int) -> None:
    console = Console()
    summary = statistics.to_json()
    console.print(f"[bold]{statistics.path}[/]  {summary['exchanges']} exchanges, {summary['sessions']} sessions, "
                  f"{summary['span_s']:.1f} s, {len(statistics.endpoints)} endpoints", soft_wrap=True)  # fmt: skip
    console.print("statuses   " + ", ".join(f"{s} ×{n}" for s, n in summary["statuses"].items()))
    console.print(f"bytes      requests {summary['request_bytes']:,}, responses {summary['response_bytes']:,}")
    coverage = summary["coverage"]
    console.print(f"coverage   {coverage['items']} items: "
                  + ", ".join(f"{kind} {n}" for kind, n in sorted(coverage["by_kind"].items())))  # fmt: skip
    if curation := statistics.header.get("curation"):
        kept = curation.get("coverage")
        if kept:
            console.print(f"curated    by {curation.get('job')} from {', '.join(curation.get('from', []))}: "
                          f"{kept['kept']} of {kept['items']} coverage items of the source", soft_wrap=True)  # fmt: skip
    table = Table(box=None, pad_edge=False)
    table.add_column("endpoint", no_wrap=True)
    for column in ("exchanges", "statuses", "request shapes", "response shapes", "query keys", "max response"):
        table.add_column(column, justify="left" if column in ("statuses", "query keys") else "right")
    for name, endpoint in statistics.endpoints.items():
        table.add_row(
            name, str(endpoint.exchanges), ", ".join(f"{s} ×{n}" for s, n in sorted(endpoint.statuses.items())),
            str(len(endpoint.request_shapes)), str(len(endpoint.response_shapes)),
            " | ".join(k or "-" for k, _ in endpoint.query_keys.most_common(3)), f"{endpoint.max_response_bytes:,} B",
        )  # fmt: skip
    console.print(table)
    if shapes:
        for name, endpoint in statistics.endpoints.items():
            console.print(f"[bold]{name}[/]", soft_wrap=True)
            for label, counter in (("request", endpoint.request_shapes), ("response", endpoint.response_shapes)):
                for shape, count in counter.most_common(shapes):
                    console.print(f"  {label:8} ×{count:<6} {shape}", soft_wrap=True, highlight=False, markup=False)


@corpus.command(short_help="Keep whole sessions chosen by a seeded hash.")
@_corpus_argument
@_output_option
@click.option("--rate", type=click.FloatRange(min=0, max=1, min_open=True), metavar="FRACTION",
              help="Keep this fraction of the sessions, e.g. 0.01.")
@click.option("--sessions", type=click.IntRange(min=1), metavar="N", help="Keep N sessions.")
@click.option("--per-endpoint", type=click.IntRange(min=1), metavar="N",
              help="Keep sessions until every endpoint has N exchanges (or all the corpus has).")
@click.option("--seed", type=int, default=0, show_default=True, help="The same seed picks the same sessions.")
def sample(corpus: Path, output: Path, rate: float | None, sessions: int | None, per_endpoint: int | None,
           seed: int) -> None:  # fmt: skip
    """Keep whole sessions chosen by a seeded hash: a session is never cut."""
    result = sample_corpus(corpus, output, SampleSpec(rate, sessions, per_endpoint, seed))
    click.echo(f"sample: {result.exchanges_before} exchanges in {result.sessions_before} sessions → "
               f"{result.exchanges_kept} exchanges in {result.sessions_kept} sessions "
               f"({_ratio(result.exchanges_before, result.exchanges_kept)}); wrote {output}")  # fmt: skip


@corpus.command(short_help="Keep one weighted representative of requests alike.")
@_corpus_argument
@_output_option
def dedup(corpus: Path, output: Path) -> None:
    """Keep one representative, with a weight, of requests that are the same after normalization.

    Sessions that repeat an earlier one request for request collapse into it; repeated GET, HEAD and OPTIONS
    requests of the sessions left collapse into their first occurrence. Replay with `--weighted` to send
    the weights as counts.
    """
    result = dedup_corpus(corpus, output)
    click.echo(f"dedup: {result.exchanges_before} exchanges → {result.exchanges_kept} representatives "
               f"({_ratio(result.exchanges_before, result.exchanges_kept)}), standing for {result.represented}; "
               f"{result.sessions_collapsed} of {result.sessions_before} sessions collapsed into an identical one; "
               f"wrote {output}")  # fmt: skip


@corpus.command(short_help="The fewest whole sessions that keep every coverage item.")
@_corpus_argument
@_output_option
@click.option("--max-exchanges", type=click.IntRange(min=1), metavar="N",
              help="At most N exchanges: coverage items first, then latency samples, as far as N allows.")
@click.option("--latency-samples", type=click.IntRange(min=0), default=LATENCY_SAMPLES, show_default=True,
              metavar="N", help="Exchanges kept per endpoint (where the corpus has them) for the latency tests.")
def minimize(corpus: Path, output: Path, max_exchanges: int | None, latency_samples: int) -> None:
    """The fewest whole sessions that keep every coverage item of `corpus stats` (greedy set cover)."""
    result = minimize_corpus(corpus, output, latency_samples=latency_samples, max_exchanges=max_exchanges)
    for line in minimize_report(result, corpus):
        click.echo(line)


def minimize_report(result: Minimized, corpus: Path) -> list[str]:
    coverage, cover = result.coverage, result.cover
    share = cover.items_kept / cover.items_total if cover.items_total else 1.0
    lines = [
        f"minimize: {coverage.exchanges} exchanges in {len(coverage.sessions)} sessions → {result.written} "
        f"exchanges in {len(cover.chosen)} sessions ({_ratio(coverage.exchanges, result.written)})",
        f"coverage: {cover.items_total} items before, {cover.items_kept} after ({share:.1%})",
    ]
    names = coverage.index.names
    if cover.missing_items:
        examples = "; ".join(names[item] for item in cover.missing_items[:3])
        warnings.warn(f"--max-exchanges is below what full coverage needs: dropped {len(cover.missing_items)} "
                      f"coverage items of {corpus}, e.g. {examples}", stacklevel=2)  # fmt: skip
    if cover.short_endpoints:
        endpoints = coverage.index.endpoint_names
        short = ", ".join(f"{endpoints[e]} {kept}/{wanted}" for e, (kept, wanted) in cover.short_endpoints.items())
        warnings.warn(f"--max-exchanges left fewer latency samples than wanted for: {short}", stacklevel=2)
    lines.append(f"wrote {result.output}")
    return lines


@corpus.command(short_help="Merge recordings into one corpus.")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@_output_option
@click.option("--overlay", is_flag=True,
              help="Start every recording together, interleaved by time, instead of one after another.")
def merge(inputs: tuple[Path, ...], output: Path, overlay: bool) -> None:
    """Merge recordings into one corpus; sessions and ids of the second and later inputs get `@N`."""
    written = merge_corpora(list(inputs), output, overlay=overlay)
    click.echo(f"merge: {len(inputs)} corpora → {written} exchanges; wrote {output}")


@corpus.command(short_help="Split a corpus into parts.")
@_corpus_argument
@click.option("--by", type=click.Choice(["endpoint", "session", "hour"]), required=True,
              help="One file per endpoint, per hour of the recording, or --parts files of whole sessions.")
@click.option("-o", "--output", "directory", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Directory for the parts.")
@click.option("--parts", type=click.IntRange(min=1), default=8, show_default=True,
              help="With --by session: how many files.")
def split(corpus: Path, by: str, directory: Path, parts: int) -> None:
    """Split a corpus into parts; with --by session every session stays whole in one part."""
    written = split_corpus(corpus, directory, by=by, parts=parts)  # type: ignore[arg-type]
    for part in written:
        click.echo(f"{part.path}  {part.exchanges} exchanges")


@corpus.command(name="filter", short_help="Keep the exchanges the replay's --filter would select.")
@_corpus_argument
@_output_option
@click.option("--filter", "patterns", multiple=True, required=True, metavar="PATTERN",
              help="As `replay --filter`: a method (POST), a path glob ('/api/*') or an endpoint "
                   "('GET /api/products/{id}'); repeatable, any match selects.")
def filter_command(corpus: Path, output: Path, patterns: tuple[str, ...]) -> None:
    """Keep the exchanges the replay's --filter would select."""
    total, kept = filter_corpus(corpus, output, patterns)
    click.echo(f"filter: {total} exchanges → {kept}; wrote {output}")
