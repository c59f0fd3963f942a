"""The asyncio engine on several cores: `replay --processes N` forks one replay process per shard of sessions.

Why processes: one event loop uses one core, and a replay's cost is mostly
per-request work in Python (sockets, parsing, records), which threads could
not spread because of the GIL. Sessions are the unit of sharding
(`shard_of`): a session's order and learned ids stay within one process.

Every process plans the whole corpus and keeps its own sessions, so
`--limit`, `--loop` and due times mean what they mean in one process, and
all start at one shared `ReplayStart`, so recorded timing and fixed rates
hold across them. Closed-loop concurrency is divided among them. Each writes
its own part file, crash-safe like any results file; the parent shows their
progress and, when they end (Ctrl-C included), copies the parts' records
into the one results file.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from replaydiff.corpora import CorpusTruncated, NoCompleteRecord, ResultsReader, ResultsWriter
from replaydiff.replayer.engine import Replayer, ReplayOptions, ReplayStart, ReplaySummary
from replaydiff.replayer.plan import PlannedRequest
from replaydiff.replayer.sessions import shard_of
from replaydiff.replayer.targets import ReplayError, Target
from replaydiff.eventloop import flushing, run_fast

STARTUP_S = 0.3
"""Head start for the processes to fork and open their files before the shared start of the plan."""
STOP_TIMEOUT_S = 15.0


class ReplayProcessFailed(ReplayError):
    pass


@dataclass(frozen=True)
class ShardedReplay:
    processes: int
    planned: Callable[[], Iterable[PlannedRequest]]
    """A fresh stream of the whole plan; each process keeps its own sessions of it."""
    targets: list[Target]
    options: ReplayOptions

    def options_of(self, shard: int) -> ReplayOptions:
        if self.options.concurrency is None:
            return self.options
        share, extra = divmod(self.options.concurrency, self.processes)
        return replace(self.options, concurrency=max(1, share + (shard < extra)))


def replay_in_processes(
    run: ShardedReplay, writer: ResultsWriter, advance: Callable[[int], None],
    watch: Callable[[int, int | None], None] = lambda completed, late: None,
) -> ReplaySummary:
    """Replays into `writer` (which the caller closes); `advance(n)` is told of n more completed exchanges, and
    `watch(completed, late)` of the totals so far, several times a second.

    Call it outside any running event loop: the processes are forked from this one.
    """
    context = multiprocessing.get_context("fork")
    progress = context.RawArray("q", run.processes)
    late = context.RawArray("q", run.processes)
    start = ReplayStart.now(delay_s=STARTUP_S)
    with tempfile.TemporaryDirectory(prefix=".replaydiff-parts-", dir=writer.path.parent) as tmp:
        parts = [Path(tmp) / f"part{shard}.jsonl.zst" for shard in range(run.processes)]
        reports: list[Connection] = []
        children = []
        for shard, part in enumerate(parts):
            receiver, sender = context.Pipe(duplex=False)
            child = context.Process(
                target=_replay_shard, args=(run, shard, part, start, progress, late, sender), name=f"replay-{shard}"
            )
            child.start()
            sender.close()
            reports.append(receiver)
            children.append(child)
        try:
            _follow(children, progress, advance, lambda: watch(sum(progress), sum(late)))
        except KeyboardInterrupt:
            _interrupt(children)
            raise
        finally:
            summaries = [ReplaySummary.from_message(r.recv()) for r in reports if r.poll()]
            for part in parts:
                _copy_part(part, writer)
    failed = [f"{c.name} exited with code {c.exitcode}" for c in children if c.exitcode]
    if failed or len(summaries) < len(children):
        raise ReplayProcessFailed(
            f"{'; '.join(failed) or 'a replay process ended without a summary'}; "
            f"the exchanges it completed are in {writer.path}"
        )
    return ReplaySummary.merged(summaries)


def _replay_shard(
    run: ShardedReplay, shard: int, part: Path, start: ReplayStart, progress: Any, late: Any, report: Connection
) -> None:
    """The forked process's whole life: replay its sessions into its part, send its summary, exit."""

    def advance() -> None:
        progress[shard] += 1
        late[shard] = replayer.summary.late or 0

    mine = (p for p in run.planned() if shard_of(p.exchange.session, run.processes) == shard)
    writer = ResultsWriter(part, background=True, shard=shard)
    replayer = Replayer(run.targets, sink=writer.write, options=run.options_of(shard), on_progress=advance)

    async def replay() -> None:
        async with flushing(writer):
            await replayer.run(mine, start=start)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_fast(replay())
    finally:
        for stop in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C (or SIGTERM) must not cut the part short
            signal.signal(stop, signal.SIG_IGN)
        writer.close()
        report.send(replayer.summary.to_message())


def _follow(
    children: list[multiprocessing.process.BaseProcess], progress: Any, advance: Callable[[int], None],
    tick: Callable[[], None],
) -> None:
    shown = 0
    while any(child.is_alive() for child in children):
        time.sleep(0.1)
        done = sum(progress)
        advance(done - shown)
        shown = done
        tick()
    advance(sum(progress) - shown)
    for child in children:
        child.join()


def _interrupt(children: list[multiprocessing.process.BaseProcess]) -> None:
    """Ctrl-C reaches the whole process group from a terminal, but `kill` only this process: pass it on, as
    SIGTERM (a replay stops on it as on Ctrl-C; a process started with `&` ignores SIGINT)."""
    for child in children:
        if child.is_alive() and child.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join()


def _copy_part(part: Path, writer: ResultsWriter) -> None:
    if not part.exists():
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorpusTruncated)  # a killed process's part: its complete records count
        try:
            part_reader = ResultsReader(part)
        except NoCompleteRecord:
            return  # killed inside its first frame: nothing of it reached the disk whole
        writer.copy_from(part_reader)
