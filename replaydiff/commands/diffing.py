"""`replaydiff diff RESULTS`: the verdict on a replay, as text, JSON and an exit code."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console

from corpora import ResultsReader
from diff.analysis import analyze
from diff.findings import DiffOptions, DiffReport
from diff.latency import LatencyThresholds
from diff.noise import NoiseThresholds
from diff.report import render_text
from replaydiff.errors import EXIT_DIVERGENT, EXIT_SAME, UserError

_NOISE = NoiseThresholds()
_LATENCY = LatencyThresholds()


def diff_results(
    path: Path | str,
    *,
    json_out: Path | str | None = None,
    console: Console,
    options: DiffOptions = DiffOptions(),
) -> int:
    """Diff a results file, print the report, write JSON if asked; the exit code says same or divergent."""
    report = report_results(path, json_out=json_out, console=console, options=options)
    return EXIT_DIVERGENT if report.divergences else EXIT_SAME


def report_results(
    path: Path | str,
    *,
    json_out: Path | str | None = None,
    console: Console,
    options: DiffOptions = DiffOptions(),
) -> DiffReport:
    """Diff a results file, print the report and write JSON if asked.

    A file with nothing to compare is an input error rather than `SAME`: a
    replay that reached no target must not pass a CI gate.
    """
    reader = ResultsReader(path)
    report = analyze(reader, options=options, targets=reader.header.get("targets") or None)
    if not report.totals.compared:
        raise UserError(
            f"{path}: nothing to compare: no exchange has both a baseline and a candidate record "
            f"({report.totals.exchanges} exchanges read); replay the corpus against both targets"
        )
    render_text(report, console)
    if json_out is not None:
        try:
            Path(json_out).write_text(
                json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
        except OSError as exc:
            raise UserError(f"{json_out}: cannot write the JSON report: {exc.strerror}") from exc
    return report


@click.command("diff")
@click.argument("results", type=click.Path(path_type=Path))
@click.option(
    "--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the report as JSON to FILE."
)
@click.option(
    "--relative-noise",
    type=click.FloatRange(0, 1, max_open=True),
    default=_NOISE.relative,
    show_default=True,
    help="Report a location only if (raw − noise) / (raw + noise) exceeds this.",
)
@click.option(
    "--absolute-noise",
    type=click.FloatRange(0, 1, max_open=True),
    default=_NOISE.absolute,
    show_default=True,
    help="Report a location only if (raw − noise) / exchanges of its endpoint exceeds this.",
)
@click.option(
    "--latency-abs-ms",
    type=click.FloatRange(min=0),
    default=_LATENCY.absolute_ms,
    show_default=True,
    help="Flag a latency regression only if the paired median slowdown is at least this many ms.",
)
@click.option(
    "--latency-rel",
    type=click.FloatRange(min=0),
    default=_LATENCY.relative,
    show_default=True,
    help="… and at least this fraction of the baseline p50.",
)
@click.pass_context
def diff(
    ctx: click.Context,
    results: Path,
    json_out: Path | None,
    relative_noise: float,
    absolute_noise: float,
    latency_abs_ms: float,
    latency_rel: float,
) -> None:
    """Compare baseline and candidate in a RESULTS file; exit 0 if same, 1 if divergent.

    Differences that baseline2 shows as often as the candidate (timestamps,
    request ids) are noise and are not reported.
    """
    options = DiffOptions(
        noise=NoiseThresholds(relative=relative_noise, absolute=absolute_noise),
        latency=LatencyThresholds(absolute_ms=latency_abs_ms, relative=latency_rel),
    )
    ctx.exit(diff_results(results, json_out=json_out, console=Console(), options=options))
