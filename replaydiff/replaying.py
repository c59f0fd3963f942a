"""The replay workflow: corpus file → checks → engine → results file, with progress.

Ctrl-C (or any failure) still closes the results file, so everything completed
so far stays readable and can be diffed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import os
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from replaydiff.corpora import CorpusReader, Request, Response, ResultsWriter
from replaydiff.corpora.endpoints import EndpointPatterns, corpus_endpoints
from replaydiff.replayer.schedule_watch import LATE_WARN_SHARE, ScheduleWatch
from replaydiff.replayer.client import TargetClient
from replaydiff.replayer.accounts import CredentialsError
from replaydiff.replayer.credentials import Credentials
from replaydiff.replayer.engine import Replayer, ReplayOptions, ReplaySummary
from replaydiff.replayer.session_loop import LATE_FLOOR_S, LATE_SHARE
from replaydiff.replayer.locust_engine import run_locust_replay
from replaydiff.replayer.upstream import attach_upstream
from replaydiff.eventloop import flushing, run_fast
from replaydiff.sharded import ShardedReplay, replay_in_processes
from replaydiff.replayer.plan import Pacing, PlannedRequest, Selection, plan
from replaydiff.replayer.targets import MUTATING_METHODS, Target, check_reachable, check_write_safety, is_loopback


@dataclass(frozen=True, slots=True)
class LocustEngine:
    workers: int
    remote_workers: int = 0
    bind_host: str = "127.0.0.1"
    port: int | None = None


class ReplayInterrupted(Exception):
    """Ctrl-C: not an error of the user's input, but the run did not finish."""


@dataclass(frozen=True, slots=True)
class ReplayJob:
    corpus: Path
    targets: list[Target]
    output: Path
    pacing: Pacing = field(default_factory=Pacing)
    selection: Selection = field(default_factory=Selection)
    options: ReplayOptions = field(default_factory=ReplayOptions)
    allowed_hosts: frozenset[str] = frozenset()
    upstream_log: Path | None = None
    """A tap's log, joined into the results after the replay."""
    engine: LocustEngine | None = None
    """None: the asyncio engine in this process; else locust's master and worker processes."""
    processes: int = 1
    """The asyncio engine's processes, each replaying its share of the sessions (one per core at most)."""
    endpoints: EndpointPatterns | None = None
    """How results are stamped with endpoints: the user's templates if any, then those learned from the corpus
    (`None`: learned when the replay starts)."""

    def planned(self) -> Iterator[PlannedRequest]:
        """Streams the plan, reading the corpus afresh for every loop."""
        return plan(
            (CorpusReader(self.corpus) for _ in itertools.count()),
            pacing=self.pacing,
            selection=self.selection,
            endpoints=(self.endpoints or EndpointPatterns()).endpoint,
        )

    def describe_mode(self) -> str:
        if self.options.concurrency:
            return f"closed loop, concurrency {self.options.concurrency}"
        if self.pacing.rate:
            return f"fixed rate {self.pacing.rate:g}/s"
        return f"recorded timing at speed {self.pacing.speed:g}x"


def replay_corpus(job: ReplayJob, *, console: Console) -> ReplaySummary:
    reader = CorpusReader(job.corpus)  # fails fast, before any target is touched, on a bad corpus
    if job.endpoints is None or not job.endpoints.learned:
        job = replace(job, endpoints=(job.endpoints or EndpointPatterns()).with_learned(corpus_endpoints(job.corpus)))
    if not all(is_loopback(t.host) or t.host in job.allowed_hosts for t in job.targets):
        mutates = any(p.exchange.request.method.upper() in MUTATING_METHODS for p in job.planned())
        check_write_safety(job.targets, set(job.allowed_hosts), corpus_mutates=mutates)
    total = _planned_total(job, reader)
    if job.options.credentials is not None:
        _prepare_credentials(job, job.options.credentials, console)
    try:
        timed = not job.options.concurrency  # recorded timing or a fixed rate: requests have due times
        with _few_collections(), _prompt_thread_switches(), _prompt_wakeups(timed, niceness=job.engine is None):
            if job.engine is not None:
                summary = _replay_on_locust(job, console)
            elif job.processes > 1:
                summary = _replay_in_processes(job, total, console)
            else:
                summary = run_fast(_replay(job, total, console))
    except KeyboardInterrupt:
        raise ReplayInterrupted(
            f"interrupted; the exchanges completed so far are in {job.output} (diff it as usual)"
        ) from None
    if job.upstream_log is not None:
        attached = attach_upstream(job.output, job.upstream_log)
        console.print(f"attached {attached} upstream calls from {job.upstream_log}", soft_wrap=True)
    return summary


def _prepare_credentials(job: ReplayJob, credentials: Credentials, console: Console) -> None:
    """Before the first replayed request: principals assigned to accounts (the same in every process), and
    every login account logged in once on every target, so a bad account fails here in one line."""
    if job.engine is not None:
        raise CredentialsError(
            "--identities and --jwt-key work with --engine asyncio only; use --processes N for more load"
        )
    run_fast(_check_all_reachable(job.targets))

    async def log_in() -> None:
        clients = {t.name: TargetClient(t, timeouts=job.options.timeouts, tls=job.options.tls, http2=job.options.http2)
                   for t in job.targets}

        async def send(target: Target, request: Request) -> Response | None:
            return (await clients[target.name].send(request, epoch_ns=time.perf_counter_ns()))[1]

        try:
            await credentials.prepare(job.targets, send)
        finally:
            await asyncio.gather(*(client.aclose() for client in clients.values()), return_exceptions=True)

    run_fast(log_in())
    principals = credentials.assign(CorpusReader(job.corpus))  # after the logins: they name the session cookies
    if credentials.identities is not None:
        accounts = len(credentials.identities.accounts)
        console.print(
            f"credentials: {principals} recorded principal{'' if principals == 1 else 's'} → "
            f"{accounts} test account{'' if accounts == 1 else 's'}",
            soft_wrap=True,
        )


@contextlib.contextmanager
def _few_collections() -> Iterator[None]:
    """Full garbage collections paused the replay for up to 300 ms at a time, which showed as schedule lag:
    freeze what start-up allocated, and collect the middle generation less often. The youngest stays small
    (a collection of 5,000 young objects takes 0.07 ms, of 50,000 about 2 ms: a stall of its own)."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(5_000, 50, 1000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


PM_QOS_DEVICE = Path("/dev/cpu_dma_latency")


LOOP_NICENESS = -10
"""The replay's own priority while it keeps a schedule: a waking event loop takes a core from a niceness-0
process (a target on the same machine) at once, instead of waiting for that process's slice to end."""


@contextlib.contextmanager
def _prompt_wakeups(wanted: bool, *, niceness: bool = True) -> Iterator[None]:
    """While a timed replay runs, a request due in a millisecond leaves when due: Linux is asked for no
    idle-state exit latency (PM QoS, as cyclictest does: an idle core polls instead of halting) and the replay
    runs at `LOOP_NICENESS` (cyclictest takes a real-time priority; a niceness cannot starve the targets).
    Forked replay processes inherit it; locust's processes do not get it (`niceness=False`): measured, its
    master at -10 took the cores from its own workers, p99 6-11 ms where it was 3.2-4.2 ms at 0.

    Measured (`bench/replay_fidelity.py`, a 2-core VM, 1,000 exchanges/s to 3 targets served on the same
    machine): without the QoS request, a replay's p99 lag was 1.6-5 times a bare timer's, its tail made of
    wake-ups of halted cores; with it, the loop's timer still woke 1.5-7 ms late now and then, and the
    thread's scheduler statistics (/proc/.../schedstat) showed it waiting 1-3 ms on a run queue behind the
    server that shared its core; at niceness -10, p99 0.29-0.41 ms where it was 0.72-3.73 ms at 0. Where
    either is not allowed (not root, not Linux), the replay runs without it."""
    if not wanted:
        yield
        return
    with _no_idle_exit_latency(), (_niceness(LOOP_NICENESS) if niceness else contextlib.nullcontext()):
        yield


@contextlib.contextmanager
def _no_idle_exit_latency() -> Iterator[None]:
    """The request lasts as long as the file stays open, and ends with the process whatever happens."""
    try:
        qos = os.open(PM_QOS_DEVICE, os.O_WRONLY)
    except OSError:
        yield
        return
    try:
        os.write(qos, struct.pack("i", 0))  # microseconds of exit latency the replay tolerates
        yield
    finally:
        os.close(qos)


@contextlib.contextmanager
def _niceness(niceness: int) -> Iterator[None]:
    """This thread's niceness (per thread on Linux; threads and processes started meanwhile inherit it)."""
    thread = threading.get_native_id()
    try:
        before = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, niceness)
    except (AttributeError, OSError):  # not Linux, or not allowed to raise a priority
        yield
        return
    try:
        yield
    finally:
        os.setpriority(os.PRIO_PROCESS, thread, before)


THREAD_SWITCH_INTERVAL_S = 0.0005
"""The longest the event loop waits for the interpreter lock while another thread of the process holds it
(the progress bar rendering, the results writer between its compressions). Python's default, 5 ms, made a
request wait for a 1.2 ms render as long as it lasted: at 10 renders a second, over 1% of requests late."""


@contextlib.contextmanager
def _prompt_thread_switches() -> Iterator[None]:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(THREAD_SWITCH_INTERVAL_S)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def _replay_on_locust(job: ReplayJob, console: Console) -> ReplaySummary:
    assert job.engine is not None
    run_fast(_check_all_reachable(job.targets))
    engine = job.engine
    console.print(
        f"replaying {job.corpus} on locust with {engine.workers} local and {engine.remote_workers} remote workers "
        f"({job.describe_mode()}) → " + ", ".join(f"{t.name} {t.base_url}" for t in job.targets),
        soft_wrap=True,
    )
    summary = run_locust_replay(
        job.corpus, job.targets, job.output, workers=engine.workers, pacing=job.pacing, selection=job.selection,
        options=job.options, mode=job.describe_mode(), remote_workers=engine.remote_workers,
        bind_host=engine.bind_host, port=engine.port,
    )  # fmt: skip
    _print_summary(console, summary, job.output)
    return summary


async def _check_all_reachable(targets: list[Target]) -> None:
    await asyncio.gather(*(check_reachable(target) for target in targets))


def _planned_total(job: ReplayJob, reader: CorpusReader) -> int | None:
    """For the progress bar; unknown when filters or a duration decide it."""
    if job.selection.filters or job.selection.duration_s is not None or job.selection.weighted:
        return job.selection.limit
    total = reader.count() * job.selection.loops
    return min(total, job.selection.limit) if job.selection.limit else total


async def _replay(job: ReplayJob, total: int | None, console: Console) -> ReplaySummary:
    await _check_all_reachable(job.targets)
    _announce(job, total, console)
    writer = _results_writer(job, background=True)
    with _progress(console, total) as advance:
        watch = _schedule_watch(console)

        def progressed() -> None:
            advance(1)
            summary = replayer.summary
            watch.check(summary.completed, summary.late, summary.lags_us)

        replayer = Replayer(job.targets, sink=writer.write, options=job.options, on_progress=progressed)
        interrupted = True
        try:
            async with flushing(writer):
                await replayer.run(job.planned())
            interrupted = False
        finally:
            writer.close(interrupted=interrupted, **replayer.summary.to_json())
    _print_summary(console, replayer.summary, job.output)
    return replayer.summary


def _replay_in_processes(job: ReplayJob, total: int | None, console: Console) -> ReplaySummary:
    run_fast(_check_all_reachable(job.targets))
    _announce(job, total, console)
    writer = _results_writer(job, background=False)
    summary: ReplaySummary | None = None
    try:
        with _progress(console, total) as advance:
            summary = replay_in_processes(
                ShardedReplay(job.processes, job.planned, job.targets, job.options), writer, advance,
                _schedule_watch(console).check,
            )
    finally:
        writer.close(interrupted=summary is None, **(summary.to_json() if summary else {}))
    assert summary is not None
    _print_summary(console, summary, job.output)
    return summary


def _announce(job: ReplayJob, total: int | None, console: Console) -> None:
    processes = f", {job.processes} processes" if job.processes > 1 else ""
    console.print(
        f"replaying {total if total is not None else 'the selected'} exchanges of {job.corpus} "
        f"({job.describe_mode()}{processes}) → " + ", ".join(f"{t.name} {t.base_url}" for t in job.targets),
        soft_wrap=True,
    )


def _results_writer(job: ReplayJob, *, background: bool) -> ResultsWriter:
    """`background` keeps compression off the replaying event loop; a writer that only merges the parts
    of forked processes needs no thread (and must not have one when they fork)."""
    return ResultsWriter(
        job.output,
        background=background,
        corpus=str(job.corpus),
        targets={t.name: t.base_url for t in job.targets},
        mode=job.describe_mode(),
        started_unix_us=time.time_ns() // 1000,
    )


def _schedule_watch(console: Console) -> ScheduleWatch:
    return ScheduleWatch(lambda line: console.print(line.replace("behind schedule:", "[yellow]behind schedule:[/]", 1),
                                                    soft_wrap=True))


def _print_summary(console: Console, summary: ReplaySummary, output: Path) -> None:
    console.print(
        f"replayed {summary.completed} exchanges in {summary.elapsed_s:.1f} s; "
        f"schedule lag p50 {summary.lag_percentile_ms(0.5):.1f} ms, p99 {summary.lag_percentile_ms(0.99):.1f} ms; "
        + _outcomes_line(summary)
        + f"; results: {output}",
        soft_wrap=True,
    )
    if summary.late and summary.completed:
        share = summary.late / summary.completed
        console.print(
            f"[yellow]behind schedule:[/] {summary.late} of {summary.completed} requests ({share:.1%}) left later than "
            f"{LATE_SHARE:.0%} of their session's recorded spacing (and {LATE_FLOOR_S * 1000:g} ms): "
            + ("their latency figures measure the replayer as much as the targets; try --processes N or a lower "
               "--speed" if share > LATE_WARN_SHARE else "a few, the recorded timing held for the rest"),
            soft_wrap=True,
        )
    _print_carried(console, summary)


CARRIED_ENDPOINTS_SHOWN = 12


def _print_carried(console: Console, summary: ReplaySummary) -> None:
    """Per endpoint, what correlation carried into each target's requests, and what it could not: values an
    earlier answer of the recording held that this target never answered (a broken session, not a divergence)."""
    by_endpoint = summary.carried.by_endpoint
    if not by_endpoint:
        return
    targets = list(summary.outcomes) or sorted({t for counts in by_endpoint.values() for t in counts})
    console.print(f"values carried from earlier answers ({' / '.join(targets)}):", soft_wrap=True)
    ranked = sorted(by_endpoint.items(), key=lambda item: (-max(c.not_found for c in item[1].values()), item[0]))
    width = max(len(endpoint) for endpoint, _ in ranked[:CARRIED_ENDPOINTS_SHOWN])
    for endpoint, counts in ranked[:CARRIED_ENDPOINTS_SHOWN]:
        carried = " / ".join(str(counts[t].carried) if t in counts else "0" for t in targets)
        line = f"  {endpoint:<{width}}  {carried}"
        missing = {t: c for t, c in counts.items() if c.not_found}
        if missing:
            where = ", ".join(f"{w} ×{n}" for w, n in next(iter(missing.values())).where.most_common(3))
            line += "; not found in the answers of " + ", ".join(f"{t} ×{c.not_found}" for t, c in missing.items())
            line += f" ({where})"
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    if len(ranked) > CARRIED_ENDPOINTS_SHOWN:
        console.print(f"  … {len(ranked) - CARRIED_ENDPOINTS_SHOWN} more endpoints in the results file's end record")


def _outcomes_line(summary: ReplaySummary) -> str:
    return "; ".join(
        f"{target} " + ", ".join(f"{kind} ×{count}" for kind, count in sorted(counts.items()))
        for target, counts in summary.outcomes.items()
    )


PROGRESS_REFRESHES_PER_S = 4
"""Each render of the bar holds the interpreter lock for about 1.2 ms of pure Python, in rich's thread: rich's
default of 10 a second delayed a request in every hundred (issue 17)."""


@contextlib.contextmanager
def _progress(console: Console, total: int | None) -> Iterator[Callable[[int], None]]:
    """`advance(done)` may be called for every exchange: the bar (and the lock rich's rendering thread holds
    while it renders) is only touched once per refresh. No bar where nobody sees one (output not a terminal)."""
    columns = (TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, refresh_per_second=PROGRESS_REFRESHES_PER_S,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task("replay", total=total)
        pending = 0
        shown_at = time.monotonic()

        def advance(done: int) -> None:
            nonlocal pending, shown_at
            pending += done
            if (now := time.monotonic()) - shown_at >= 1 / PROGRESS_REFRESHES_PER_S:
                progress.advance(task, pending)
                pending, shown_at = 0, now

        yield advance
        progress.advance(task, pending)
