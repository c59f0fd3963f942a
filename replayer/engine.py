"""The asyncio engine: drives a stream of planned requests through every target at once.

Each planned request is sent to all targets in the same event-loop tick, so
time-dependent behaviour (clocks, caches, load) hits them alike and the
baseline-vs-baseline#2 difference measures exactly the noise the candidate
comparison also contains.

The plan streams in: a dispatcher reads ahead at most `max_backlog` requests
and hands each to its session's queue; one task per active session sends the
session's requests in order. Open loop (recorded timing or a fixed rate) waits
for each request's due time; closed loop sends as soon as one of
`concurrency` slots is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from replaydiff.corpora import Attempt, Exchange, ReplayRecord, Request, Response
from replaydiff.replayer.client import EncodedRequest, PendingAttempt, Sendable, TargetClient, Timeouts, TLSOptions
from replaydiff.replayer.correlate import Carried, CarryCounts, CarryRules
from replaydiff.replayer.credentials import Credentials
from replaydiff.replayer.deadline_timer import DeadlineTimer
from replaydiff.replayer.http2 import is_http2
from replaydiff.replayer.plan import PlannedRequest
from replaydiff.replayer.retry import RetryPolicy
from replaydiff.replayer.session_loop import AttemptLog, ReplaySession, Send, SessionLoop, Wait
from replaydiff.replayer.targets import Target
from replaydiff.replayer.tracing import new_span_id, traceparent


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    concurrency: int | None = None
    """Closed loop with this many requests in flight; None paces by the plan's due times."""
    timeouts: Timeouts = field(default_factory=Timeouts)
    tls: TLSOptions = field(default_factory=TLSOptions)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    correlate: bool = True
    carry: CarryRules = field(default_factory=CarryRules)
    """Places to carry forward beyond the id-like values correlation learns by itself."""
    max_backlog: int = 10_000
    credentials: Credentials | None = None
    """Test accounts and re-signed JWTs in place of the recorded credentials (`replayer.credentials`)."""
    trace_salt: str = ""
    """Part of every trace id. The same salt gives a rerun the same trace ids, so a tap's seeded faults
    repeat too; a new salt (e.g. the date) makes a run's ids unique in the targets' logs."""
    http2: bool = True
    """Exchanges recorded in HTTP/2 go out in HTTP/2; False: every exchange in HTTP/1.1 (`--http1`, for
    targets that speak only HTTP/1.1)."""


@dataclass(slots=True)
class ReplaySummary:
    planned: int | None = None
    completed: int = 0
    lags_us: array[int] = field(default_factory=lambda: array("q"))
    late: int | None = 0
    """Requests that left late for the recorded timing (`session_loop.LATE_SHARE`); None: not counted (a
    summary from before they were)."""
    elapsed_s: float = 0.0
    epoch_unix_us: int = 0
    """Wall-clock time of the replay's start: attempts' `sent_us` count from here."""
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    """Per target: how many final outcomes were each status class or error kind."""
    carried: CarryCounts = field(default_factory=CarryCounts)
    """Per endpoint and target: values correlation carried, and learned values the target never answered."""

    def lag_percentile_ms(self, q: float) -> float:
        if not self.lags_us:
            return 0.0
        ordered = sorted(self.lags_us)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

    def count(self, target: str, attempt: Attempt) -> None:
        outcome = attempt.error or f"{attempt.status // 100}xx"
        counts = self.outcomes.get(target)
        if counts is None:  # not setdefault: it would build a Counter per request, a few µs each
            counts = self.outcomes[target] = Counter()
        counts[outcome] += 1

    def to_message(self) -> dict[str, Any]:
        """The whole summary, every lag included, from a process that replayed one shard to the one merging."""
        return {"planned": self.planned, "completed": self.completed, "elapsed_s": self.elapsed_s,
                "epoch_unix_us": self.epoch_unix_us, "lags_us": self.lags_us.tolist(), "late": self.late,
                "outcomes": self.outcomes,
                "carried": self.carried.to_json()}

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> ReplaySummary:
        summary = cls(planned=data["planned"], completed=data["completed"], elapsed_s=data["elapsed_s"],
                      epoch_unix_us=data.get("epoch_unix_us", 0), late=data.get("late"))
        summary.lags_us.extend(data["lags_us"])
        for target, counts in data["outcomes"].items():
            summary.outcomes[target] = Counter(counts)
        summary.carried = CarryCounts.from_json(data.get("carried", {}))
        return summary

    @classmethod
    def merged(cls, shards: list[ReplaySummary]) -> ReplaySummary:
        """One summary of a replay whose sessions were spread over processes that started together."""
        summary = cls(epoch_unix_us=min((s.epoch_unix_us for s in shards), default=0))
        for shard in shards:
            summary.completed += shard.completed
            summary.elapsed_s = max(summary.elapsed_s, shard.elapsed_s)
            summary.lags_us.extend(shard.lags_us)
            summary.late = None if summary.late is None or shard.late is None else summary.late + shard.late
            for target, counts in shard.outcomes.items():
                summary.outcomes.setdefault(target, Counter()).update(counts)
            summary.carried.merge(shard.carried)
        return summary

    def to_json(self) -> dict[str, object]:
        return {
            "completed": self.completed,
            "elapsed_s": round(self.elapsed_s, 3),
            "epoch_unix_us": self.epoch_unix_us,
            "schedule_lag_ms": {"p50": self.lag_percentile_ms(0.5), "p99": self.lag_percentile_ms(0.99)},
            "late": self.late,
            "outcomes": {target: dict(counts) for target, counts in self.outcomes.items()},
            "carried": self.carried.to_json(),
        }


RecordSink = Callable[[ReplayRecord], None]

PREFETCH_S = 1.0
"""The longest a replay reads its corpus ahead before its clock starts."""
WARM_CONNECTIONS = 64
"""Connections per target opened before an open-loop replay's clock starts (at most one per session read
ahead): at thousands of requests a second to a fast target, a few dozen kept-alive ones carry them all."""


@dataclass(frozen=True, slots=True)
class ReplayStart:
    """When a replay's plan starts, on both clocks: `perf_ns` on the monotonic clock, which every process of
    the machine shares, times the schedule; `unix_us` dates the attempts in the results."""

    perf_ns: int
    unix_us: int

    @classmethod
    def now(cls, delay_s: float = 0.0) -> ReplayStart:
        return cls(time.perf_counter_ns() + int(delay_s * 1e9), time.time_ns() // 1000 + int(delay_s * 1e6))


class Replayer:
    """Runs the session loop (`replayer.session_loop`) on asyncio: one task per session with requests waiting."""

    def __init__(
        self,
        targets: list[Target],
        *,
        sink: RecordSink,
        options: ReplayOptions = ReplayOptions(),
        on_progress: Callable[[], None] = lambda: None,
    ) -> None:
        self.targets = targets
        self.options = options
        self.summary = ReplaySummary()
        self._sink = sink
        if (credentials := options.credentials) is not None:  # what a target echoes of them is not written
            self._sink = lambda record: sink(credentials.masked(record))
        self._on_progress = on_progress
        self._loop = SessionLoop(options)
        self._drains: set[asyncio.Task[None]] = set()
        self._timer: DeadlineTimer  # made on the replay's own event loop, in `run`
        self._clients: list[TargetClient] = []
        self._backlog = asyncio.Semaphore(options.max_backlog)
        self._slots = asyncio.Semaphore(options.concurrency or 1)
        """Closed loop only: open loop sends each request when it is due."""

    async def run(self, planned: Iterable[PlannedRequest], *, start: ReplayStart | None = None) -> ReplaySummary:
        """`start`: a moment shared with the other processes replaying other sessions of the same plan;
        by default the clock starts once the backlog is read ahead (or after `PREFETCH_S`)."""
        self._clients = [
            TargetClient(t, timeouts=self.options.timeouts, tls=self.options.tls, http2=self.options.http2)
            for t in self.targets
        ]
        stream = iter(planned)
        self._loop.epoch_ns = start.perf_ns if start else time.perf_counter_ns() + int(PREFETCH_S * 1e9)
        self._timer = DeadlineTimer(asyncio.get_running_loop())
        try:
            start = await self._read_ahead(stream, start)
            self.summary.epoch_unix_us = start.unix_us
            for number, request in enumerate(stream):
                await self._backlog.acquire()
                self._dispatch(request)
                if number % 64 == 0:
                    await asyncio.sleep(0)  # reading the corpus must not starve the senders
            await asyncio.gather(*list(self._drains))
        finally:
            for drain in self._drains:
                drain.cancel()
            self.summary.elapsed_s = self._loop.now_s()
            self._timer.close()
            await asyncio.gather(*(client.aclose() for client in self._clients), return_exceptions=True)
        return self.summary

    async def _read_ahead(self, stream: Iterator[PlannedRequest], start: ReplayStart | None) -> ReplayStart:
        """Open loop, before the clock starts: read ahead up to the backlog, so that reading the corpus does not
        compete with the first requests for the loop, and open connections for the sessions read (their tasks
        start only once the clock has, so none of them waits against a provisional clock). Then start the
        clock, or wait for the start shared with the other processes."""
        read_ahead = self.options.max_backlog if self.options.concurrency is None else 0
        sessions: list[ReplaySession] = []
        for request in itertools.islice(stream, read_ahead):
            await self._backlog.acquire()  # free, so it returns at once
            if (session := self._loop.enqueue(request)) is not None:
                sessions.append(session)
            if self._loop.now_s() >= 0:
                break
        if sessions:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, -self._loop.now_s())):
                    versions = {self.options.http2 and is_http2(p.exchange.request.http_version)
                                for s in sessions for p in s.queue}
                    warm = min(len(sessions), WARM_CONNECTIONS) if False in versions else 0
                    await asyncio.gather(*(client.warm(warm, http2=True in versions) for client in self._clients))
        if start is not None:
            await asyncio.sleep(max(0.0, -self._loop.now_s()))
        else:
            start = ReplayStart.now()
            self._loop.epoch_ns = start.perf_ns
        for session in sessions:
            self._drain_in_task(session)
        return start

    def _dispatch(self, request: PlannedRequest) -> None:
        session = self._loop.enqueue(request)
        if session is not None:
            self._drain_in_task(session)

    def _drain_in_task(self, session: ReplaySession) -> None:
        drain = asyncio.create_task(self._drain(session))
        self._drains.add(drain)
        drain.add_done_callback(self._drains.discard)

    async def _drain(self, session: ReplaySession) -> None:
        for step in self._loop.steps(session):
            if isinstance(step, Wait):
                await self._timer.wait(step)
                continue
            if self.options.concurrency is None:
                await self._fan_out(step, session)
            else:
                async with self._slots:
                    await self._fan_out(step, session)
            self._backlog.release()

    async def _fan_out(self, send: Send, session: ReplaySession) -> None:
        planned = send.planned
        encoded = EncodedRequest.shared(planned.exchange.request, http2=self.options.http2)
        # All sent now, in an order that turns with every request: the target written last wakes last, a few
        # ms later on a busy machine, and a fixed order made the candidate's timestamps differ from the
        # baseline's more often than baseline2's did (false divergences the noise rule could not cancel).
        turn = self.summary.completed % len(self._clients)
        begun = {
            id(client): self._begin(planned, client, session, encoded)
            for client in self._clients[turn:] + self._clients[:turn]
        }
        started = [begun[id(client)] for client in self._clients]
        pairs = zip(self._clients, started)
        if self.options.retry.retries:  # each target retries on its own clock
            logs = await asyncio.gather(*(self._attempts(client, first, planned.exchange) for client, first in pairs))
        else:  # one attempt each, already sent: no task needed to wait for them in turn
            logs = [await self._attempts(client, first, planned.exchange) for client, first in pairs]
        outcomes = [(client.target.name, trace_id, log, carried) for client, (trace_id, _, _, carried), log
                    in zip(self._clients, started, logs)]
        for record in self._loop.records(send, session, outcomes):
            self.summary.count(record.target, record.attempts[-1])
            self.summary.carried.add(record.endpoint, record.target, record.carried, record.not_carried)
            self._sink(record)
        self.summary.completed += 1
        self.summary.lags_us.append(send.lag_us)
        if send.late:
            self.summary.late = (self.summary.late or 0) + 1
        self._on_progress()

    def _begin(
        self, planned: PlannedRequest, client: TargetClient, session: ReplaySession, encoded: Sendable
    ) -> tuple[str, Sendable, PendingAttempt, Carried]:
        trace_id, carried = self._loop.request_for(planned, session, client.target.name)
        # unchanged for this target: the bytes encoded once for all targets
        wire: Sendable = encoded if carried.request is planned.exchange.request else carried.request
        return trace_id, wire, self._send(client, wire, trace_id), carried

    async def _relogin(
        self, client: TargetClient, request: Sendable, exchange: Exchange
    ) -> Request | None:
        """The request with fresh credentials of its account, after logging it in again; None without a login."""
        credentials = self.options.credentials
        if credentials is None or not credentials.can_relogin(exchange):
            return None

        async def send(_: Target, login: Request) -> Response | None:
            return (await client.send(login, epoch_ns=self._loop.epoch_ns))[1]

        name = client.target.name
        await credentials.relogin(exchange, client.target, send, credentials.generation(exchange, name))
        return credentials.rewrite(exchange, request if isinstance(request, Request) else exchange.request, name)

    def _send(self, client: TargetClient, request: Sendable, trace_id: str) -> PendingAttempt:
        span_id = new_span_id()
        return client.begin(request, extra_headers=[("traceparent", traceparent(trace_id, span_id))], span_id=span_id)

    async def _attempts(
        self, client: TargetClient, first: tuple[str, Sendable, PendingAttempt, Carried],
        exchange: Exchange,
    ) -> AttemptLog:
        """Every attempt at one target under the retry policy; the last one's response is final. A 401 to an
        account that logs in is answered once by logging in again and resending (its session expired)."""
        trace_id, request, pending, _ = first
        log = self._loop.attempts()
        logged_in_again = False
        while True:
            attempt, response = await client.finish(pending, epoch_ns=self._loop.epoch_ns)
            if attempt.status == 401 and not logged_in_again:  # perhaps the account's session expired
                logged_in_again = True
                if (fresh := await self._relogin(client, request, exchange)) is not None:
                    log.attempts.append(attempt)
                    request, pending = fresh, self._send(client, fresh, trace_id)
                    continue
            if (backoff_s := log.add(attempt, response)) is None:
                return log
            await asyncio.sleep(backoff_s)
            pending = self._send(client, request, trace_id)
