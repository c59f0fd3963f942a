"""`replaydiff replay` and `replaydiff run` (replay, then diff)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from replayer.client import Timeouts
from replayer.engine import ReplayOptions
from replayer.targets import Target
from replaydiff.replaying import ReplayJob, replay_corpus


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise click.BadParameter(f"{text!r} is not 'Name: value'")
    return name.strip(), value.strip()


def replay_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by `replay` and `run`, declared once."""
    decorators = [
        click.argument("corpus", type=click.Path(path_type=Path)),
        click.option("--baseline", required=True, metavar="URL", help="The version in production today."),
        click.option("--candidate", required=True, metavar="URL", help="The change under test (e.g. a sandbox)."),
        click.option(
            "--baseline2",
            metavar="URL",
            help="A second baseline for learning noise; defaults to the baseline URL again.",
        ),
        click.option(
            "-o", "--output", type=click.Path(path_type=Path), help="Results file [default: CORPUS-NAME.results.jsonl.zst]."
        ),
        click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
                     help="Recorded timing scaled: 2 replays twice as fast."),
        click.option("--concurrency", type=click.IntRange(min=1), metavar="N",
                     help="Closed loop: N sessions in flight, each request as soon as the last one answered."),
        click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Replay only the first N exchanges."),
        click.option("--baseline-header", "baseline_headers", multiple=True, metavar="'NAME: VALUE'",
                     help="Extra header for both baselines (repeatable)."),
        click.option("--candidate-header", "candidate_headers", multiple=True, metavar="'NAME: VALUE'",
                     help="Extra header for the candidate, e.g. a sandbox routing key (repeatable)."),
        click.option("--allow-host", "allowed_hosts", multiple=True, metavar="HOST",
                     help="A non-loopback host that may receive POST/PUT/PATCH/DELETE (repeatable)."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
                     help="Seconds to wait for a response."),
        click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), default=5.0,
                     show_default=True, help="Seconds to wait for a connection."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def _job(corpus: Path, baseline: str, candidate: str, baseline2: str | None, output: Path | None, speed: float,
         concurrency: int | None, limit: int | None, baseline_headers: tuple[str, ...],
         candidate_headers: tuple[str, ...], allowed_hosts: tuple[str, ...], timeout: float,
         connect_timeout: float) -> ReplayJob:
    base_headers = [_header(h) for h in baseline_headers]
    targets = [
        Target.parse("baseline", baseline, base_headers),
        Target.parse("baseline2", baseline2 or baseline, base_headers),
        Target.parse("candidate", candidate, [_header(h) for h in candidate_headers]),
    ]
    return ReplayJob(
        corpus=corpus,
        targets=targets,
        output=output or Path(corpus.name.removesuffix(".zst").removesuffix(".jsonl") + ".results.jsonl.zst"),
        speed=speed,
        limit=limit,
        options=ReplayOptions(concurrency=concurrency, timeouts=Timeouts(connect_s=connect_timeout, read_s=timeout)),
        allowed_hosts=frozenset(allowed_hosts),
    )


@click.command()
@replay_options
def replay(**params: Any) -> None:
    """Send every request of CORPUS to the baseline, a second baseline and the candidate at once."""
    replay_corpus(_job(**params), console=Console(stderr=True))


@click.command()
@replay_options
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Also write the report as JSON.")
def run(json_out: Path | None, **params: Any) -> None:
    """Replay CORPUS, then diff the results: exit 0 same, 1 divergent."""
    from replaydiff.commands.diffing import diff_results  # the differ loads only when a diff runs

    job = _job(**params)
    replay_corpus(job, console=Console(stderr=True))
    raise SystemExit(diff_results(job.output, json_out=json_out, console=Console()))
