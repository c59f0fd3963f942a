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
import itertools
import random
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from replaydiff.corpora import Attempt, Exchange, ReplayRecord, Request, Response
from replaydiff.replayer.client import EncodedRequest, PendingAttempt, TargetClient, Timeouts, TLSOptions
from replaydiff.replayer.correlate import CarryRules, SessionCorrelator
from replaydiff.replayer.credentials import Credentials
from replaydiff.replayer.plan import PlannedRequest
from replaydiff.replayer.retry import RetryPolicy
from replaydiff.replayer.sessions import SessionTable
from replaydiff.replayer.targets import Target
from replaydiff.replayer.tracing import new_span_id, trace_id_for, traceparent


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


@dataclass(slots=True)
class ReplaySummary:
    planned: int | None = None
    completed: int = 0
    lags_us: array[int] = field(default_factory=lambda: array("q"))
    elapsed_s: float = 0.0
    epoch_unix_us: int = 0
    """Wall-clock time of the replay's start: attempts' `sent_us` count from here."""
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)
    """Per target: how many final outcomes were each status class or error kind."""

    def lag_percentile_ms(self, q: float) -> float:
        if not self.lags_us:
            return 0.0
        ordered = sorted(self.lags_us)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

    def count(self, target: str, attempt: Attempt) -> None:
        outcome = attempt.error or f"{attempt.status // 100}xx"
        self.outcomes.setdefault(target, Counter())[outcome] += 1

    def to_message(self) -> dict[str, Any]:
        """The whole summary, every lag included, from a process that replayed one shard to the one merging."""
        return {"planned": self.planned, "completed": self.completed, "elapsed_s": self.elapsed_s,
                "epoch_unix_us": self.epoch_unix_us, "lags_us": self.lags_us.tolist(), "outcomes": self.outcomes}

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> ReplaySummary:
        summary = cls(planned=data["planned"], completed=data["completed"], elapsed_s=data["elapsed_s"],
                      epoch_unix_us=data.get("epoch_unix_us", 0))
        summary.lags_us.extend(data["lags_us"])
        for target, counts in data["outcomes"].items():
            summary.outcomes[target] = Counter(counts)
        return summary

    @classmethod
    def merged(cls, shards: list[ReplaySummary]) -> ReplaySummary:
        """One summary of a replay whose sessions were spread over processes that started together."""
        summary = cls(epoch_unix_us=min((s.epoch_unix_us for s in shards), default=0))
        for shard in shards:
            summary.completed += shard.completed
            summary.elapsed_s = max(summary.elapsed_s, shard.elapsed_s)
            summary.lags_us.extend(shard.lags_us)
            for target, counts in shard.outcomes.items():
                summary.outcomes.setdefault(target, Counter()).update(counts)
        return summary

    def to_json(self) -> dict[str, object]:
        return {
            "completed": self.completed,
            "elapsed_s": round(self.elapsed_s, 3),
            "epoch_unix_us": self.epoch_unix_us,
            "schedule_lag_ms": {"p50": self.lag_percentile_ms(0.5), "p99": self.lag_percentile_ms(0.99)},
            "outcomes": {target: dict(counts) for target, counts in self.outcomes.items()},
        }


RecordSink = Callable[[ReplayRecord], None]

TIMER_SLACK_S = 0.0005
"""Added to every wait for a due time. uvloop counts whole milliseconds and rounds each delay to the nearest
one, so a bare wait may end up to a millisecond early (a request sent early is as wrong as a late one, and the
lag would not show it); with half a millisecond more it ends on time or up to a millisecond late."""

PREFETCH_S = 1.0
"""The longest a replay reads its corpus ahead before its clock starts."""


@dataclass(frozen=True, slots=True)
class ReplayStart:
    """When a replay's plan starts, on both clocks: `perf_ns` on the monotonic clock, which every process of
    the machine shares, times the schedule; `unix_us` dates the attempts in the results."""

    perf_ns: int
    unix_us: int

    @classmethod
    def now(cls, delay_s: float = 0.0) -> ReplayStart:
        return cls(time.perf_counter_ns() + int(delay_s * 1e9), time.time_ns() // 1000 + int(delay_s * 1e6))


@dataclass(slots=True)
class _Session:
    queue: deque[PlannedRequest] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    last_done_s: float | None = None
    correlator: SessionCorrelator = field(default_factory=SessionCorrelator)


class Replayer:
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
        self._rng = random.Random()
        self._sessions: SessionTable[_Session] = SessionTable(
            lambda: _Session(correlator=SessionCorrelator(rules=options.carry)), busy=lambda s: s.task is not None
        )
        self._clients: list[TargetClient] = []
        self._epoch_ns = 0
        self._backlog = asyncio.Semaphore(options.max_backlog)
        self._slots = asyncio.Semaphore(options.concurrency or 1)
        """Closed loop only: open loop sends each request when it is due."""

    async def run(self, planned: Iterable[PlannedRequest], *, start: ReplayStart | None = None) -> ReplaySummary:
        """`start`: a moment shared with the other processes replaying other sessions of the same plan;
        by default the clock starts once the backlog is read ahead (or after `PREFETCH_S`)."""
        self._clients = [
            TargetClient(t, timeouts=self.options.timeouts, tls=self.options.tls) for t in self.targets
        ]
        stream = iter(planned)
        shared = start is not None
        self._epoch_ns = start.perf_ns if start else time.perf_counter_ns() + int(PREFETCH_S * 1e9)
        try:
            # Open loop, before the clock starts and without yielding (so no session runs yet): read ahead up to
            # the backlog, so that reading the corpus does not compete with the first requests for the loop.
            read_ahead = self.options.max_backlog if self.options.concurrency is None else 0
            for request in itertools.islice(stream, read_ahead):
                await self._backlog.acquire()  # free, so it returns at once
                self._dispatch(request)
                if self._now_s() >= 0:
                    break
            if shared:
                await asyncio.sleep(max(0.0, -self._now_s()))
            else:
                start = ReplayStart.now()
                self._epoch_ns = start.perf_ns
            assert start is not None
            self.summary.epoch_unix_us = start.unix_us
            for number, request in enumerate(stream):
                await self._backlog.acquire()
                self._dispatch(request)
                if number % 64 == 0:
                    await asyncio.sleep(0)  # reading the corpus must not starve the senders
            await asyncio.gather(*(s.task for s in self._sessions if s.task))
        finally:
            for session in self._sessions:
                if session.task:
                    session.task.cancel()
            self.summary.elapsed_s = self._now_s()
            await asyncio.gather(*(client.aclose() for client in self._clients), return_exceptions=True)
        return self.summary

    def _now_s(self) -> float:
        return (time.perf_counter_ns() - self._epoch_ns) / 1e9

    def _dispatch(self, request: PlannedRequest) -> None:
        session = self._sessions.get(request.exchange.session)
        session.queue.append(request)
        if session.task is None:
            session.task = asyncio.create_task(self._drain(session))

    async def _drain(self, session: _Session) -> None:
        while session.queue:
            planned = session.queue.popleft()
            due_s = planned.due_s
            if self.options.concurrency is None:
                if session.last_done_s is not None:
                    due_s = max(due_s, session.last_done_s + planned.think_s)
                while (delay_s := due_s - self._now_s()) > 0:  # never early, even on a coarse timer
                    await asyncio.sleep(delay_s + TIMER_SLACK_S)
                lag_s = self._now_s() - due_s
                await self._fan_out(planned, session, int(lag_s * 1e6))
                # Think time counts from when the answers would have come had the request left on time: the
                # replayer's own lateness must not push the session's later requests (sessions delayed by one
                # busy moment would otherwise stay bunched together, and bunch more at every turn).
                session.last_done_s = self._now_s() - lag_s
            else:
                async with self._slots:
                    await self._fan_out(planned, session, 0)
                session.last_done_s = self._now_s()
            self._backlog.release()
        session.task = None

    async def _fan_out(self, planned: PlannedRequest, session: _Session, lag_us: int) -> None:
        encoded = EncodedRequest.shared(planned.exchange.request)
        started = [self._begin(planned, client, session, encoded) for client in self._clients]  # all sent now
        pairs = zip(self._clients, started)
        if self.options.retry.retries:  # each target retries on its own clock
            exchange = planned.exchange
            outcomes = await asyncio.gather(*(self._attempts(client, first, exchange) for client, first in pairs))
        else:  # one attempt each, already sent: no task needed to wait for them in turn
            outcomes = [await self._attempts(client, first, planned.exchange) for client, first in pairs]
        live: dict[str, Response | None] = {}
        for client, (trace_id, _, _), (attempts, response) in zip(self._clients, started, outcomes):
            name = client.target.name
            live[name] = response
            self.summary.count(name, attempts[-1])
            self._sink(
                ReplayRecord(
                    exchange_id=planned.exchange.id,
                    target=name,
                    endpoint=planned.endpoint,
                    attempts=attempts,
                    response=response,
                    schedule_lag_us=lag_us,
                    trace_id=trace_id,
                    recorded_status=recorded.status if (recorded := planned.exchange.response) else None,
                )
            )
        if self.options.correlate:
            session.correlator.observe(planned.exchange, live)
        self.summary.completed += 1
        self.summary.lags_us.append(lag_us)
        self._on_progress()

    def _begin(
        self, planned: PlannedRequest, client: TargetClient, session: _Session, encoded: Request | EncodedRequest
    ) -> tuple[str, Request | EncodedRequest, PendingAttempt]:
        request: Request | EncodedRequest = planned.exchange.request
        if self.options.correlate:
            request = session.correlator.rewrite(planned.exchange.request, client.target.name)
        if self.options.credentials is not None:
            request = self.options.credentials.rewrite(planned.exchange, request, client.target.name)
        if request is planned.exchange.request:
            request = encoded  # unchanged for this target: the bytes encoded once for all targets
        trace_id = trace_id_for(self.options.trace_salt, planned.exchange.id, client.target.name)
        return trace_id, request, self._send(client, request, trace_id)

    async def _relogin(
        self, client: TargetClient, request: Request | EncodedRequest, exchange: Exchange
    ) -> Request | None:
        """The request with fresh credentials of its account, after logging it in again; None without a login."""
        credentials = self.options.credentials
        if credentials is None or not credentials.can_relogin(exchange):
            return None

        async def send(_: Target, login: Request) -> Response | None:
            return (await client.send(login, epoch_ns=self._epoch_ns))[1]

        name = client.target.name
        await credentials.relogin(exchange, client.target, send, credentials.generation(exchange, name))
        return credentials.rewrite(exchange, request if isinstance(request, Request) else exchange.request, name)

    def _send(self, client: TargetClient, request: Request | EncodedRequest, trace_id: str) -> PendingAttempt:
        span_id = new_span_id()
        return client.begin(request, extra_headers=[("traceparent", traceparent(trace_id, span_id))], span_id=span_id)

    async def _attempts(
        self, client: TargetClient, first: tuple[str, Request | EncodedRequest, PendingAttempt], exchange: Exchange
    ) -> tuple[list[Attempt], Response | None]:
        """Every attempt at one target under the retry policy; the last one's response is final."""
        trace_id, request, pending = first
        attempts: list[Attempt] = []
        logged_in_again = False
        while True:
            attempt, response = await client.finish(pending, epoch_ns=self._epoch_ns)
            attempts.append(attempt)
            if attempt.status == 401 and not logged_in_again:  # perhaps the account's session expired
                logged_in_again = True
                if (fresh := await self._relogin(client, request, exchange)) is not None:
                    request, pending = fresh, self._send(client, fresh, trace_id)
                    continue
            if not self.options.retry.should_retry(attempt, len(attempts)):
                return attempts, response
            await asyncio.sleep(self.options.retry.backoff(len(attempts), self._rng))
            pending = self._send(client, request, trace_id)
