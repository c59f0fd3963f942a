"""The replay workflow: corpus file → checks → engine → results file, with progress.

Ctrl-C (or any failure) still closes the results file, so everything completed
so far stays readable and can be diffed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from corpora import CorpusReader, ResultsWriter
from replayer.engine import Replayer, ReplayOptions, ReplaySummary
from replayer.plan import Schedule, plan
from replayer.targets import MUTATING_METHODS, Target, check_reachable, check_write_safety


class ReplayInterrupted(Exception):
    """Ctrl-C: not an error of the user's input, but the run did not finish."""


@dataclass(frozen=True, slots=True)
class ReplayJob:
    corpus: Path
    targets: list[Target]
    output: Path
    speed: float = 1.0
    limit: int | None = None
    options: ReplayOptions = field(default_factory=ReplayOptions)
    allowed_hosts: frozenset[str] = frozenset()


def replay_corpus(job: ReplayJob, *, console: Console) -> ReplaySummary:
    exchanges = list(CorpusReader(job.corpus))
    schedule = plan(exchanges, speed=job.speed, limit=job.limit)
    mutates = any(p.exchange.request.method.upper() in MUTATING_METHODS for s in schedule.sessions for p in s.requests)
    check_write_safety(job.targets, set(job.allowed_hosts), corpus_mutates=mutates)
    try:
        return asyncio.run(_replay(job, schedule, console))
    except KeyboardInterrupt:
        raise ReplayInterrupted(
            f"interrupted; the exchanges completed so far are in {job.output} (diff it as usual)"
        ) from None


async def _replay(job: ReplayJob, schedule: Schedule, console: Console) -> ReplaySummary:
    await asyncio.gather(*(check_reachable(target) for target in job.targets))
    mode = f"closed loop, concurrency {job.options.concurrency}" if job.options.concurrency else f"speed {job.speed:g}x"
    console.print(
        f"replaying {schedule.total} exchanges in {len(schedule.sessions)} sessions ({mode}) → "
        + ", ".join(f"{t.name} {t.base_url}" for t in job.targets),
        soft_wrap=True,
    )
    writer = ResultsWriter(
        job.output,
        corpus=str(job.corpus),
        targets={t.name: t.base_url for t in job.targets},
        mode=mode,
    )
    summary = ReplaySummary(planned=schedule.total)
    interrupted = True
    try:
        with _progress(console, schedule.total) as advance:
            async with _flushing(writer):
                replayer = Replayer(job.targets, sink=writer.write, options=job.options, on_progress=advance)
                summary = await replayer.run(schedule)
        interrupted = False
    finally:
        writer.close(interrupted=interrupted, **summary.to_json())
    console.print(
        f"replayed {summary.completed}/{summary.planned} in {summary.elapsed_s:.1f} s; "
        f"schedule lag p50 {summary.lag_percentile_ms(0.5):.1f} ms, p99 {summary.lag_percentile_ms(0.99):.1f} ms; "
        f"results: {job.output}",
        soft_wrap=True,
    )
    return summary


@contextlib.contextmanager
def _progress(console: Console, total: int) -> Iterator[Callable[[], None]]:
    columns = (TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("replay", total=total)
        yield lambda: progress.advance(task)


@contextlib.asynccontextmanager
async def _flushing(writer: ResultsWriter) -> AsyncIterator[None]:
    """Quiet stretches of a replay still reach disk within a second."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.5)
            writer.flush_if_due()

    ticker = asyncio.create_task(tick())
    try:
        yield
    finally:
        ticker.cancel()
