"""The session loop both engines run: when each of a session's requests leaves, what each target is sent, how
attempts are retried, and what the records say.

It decides and does no I/O, so the asyncio engine (`replayer.engine`) and the
locust worker (`replayer.locustfile`, under gevent) drive the same decisions
with their own waits and sockets: an engine asks a session for its next step
(`SessionLoop.steps`), waits when told to `Wait`, and on `Send` sends the
request to every target at once (`request_for` per target, `AttemptLog` per
target for the retries), hands the outcomes to `records`, and only then asks
for the next step. Same corpus and options, same send plan, whichever engine.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from replaydiff.corpora import Attempt, ReplayRecord, Response
from replaydiff.corpora.grpc import grpc_status, is_grpc
from replaydiff.replayer.correlate import Carried, SessionCorrelator
from replaydiff.replayer.plan import PlannedRequest
from replaydiff.replayer.retry import RetryPolicy
from replaydiff.replayer.sessions import SessionTable
from replaydiff.corpora.trace import TRACE_TAG
from replaydiff.replayer.tracing import trace_id_for

if TYPE_CHECKING:
    from replaydiff.replayer.engine import ReplayOptions

TIMER_SLACK_S = 0.0005
"""Added to a wait by an engine on a coarse timer. uvloop's own timers (and gevent's libev) count whole
milliseconds and round each delay to the nearest one, so a bare wait may end up to a millisecond early (a request
sent early is as wrong as a late one, and the lag would not show it); with half a millisecond more it ends on time
or up to a millisecond late, and a wait that still ends early is simply waited again. The asyncio engine waits on
a timerfd instead where there is one (`replayer.deadline_timer`), to the microsecond and without slack."""

LATE_SHARE = 0.1
"""A request is late, its timing no longer the recording's, when it leaves later than this share of its
session's recorded spacing (how long after the session's previous request it was due)..."""
LATE_FLOOR_S = 0.005
"""... and later than this: a bare uvloop timer on the same schedule wakes up to a millisecond or two late on
a loaded machine (`bench/replay_fidelity.py`), which is not the replayer falling behind."""


@dataclass(slots=True)
class ReplaySession:
    """One session's state on one engine: its waiting requests, when its last answers came, what it learned."""

    correlator: SessionCorrelator
    queue: deque[PlannedRequest] = field(default_factory=deque)
    busy: bool = False
    """Being drained by one sender (task or locust slot); a session is never drained twice at once, which keeps
    its order."""
    last_done_s: float | None = None
    last_due_s: float | None = None
    """The previous request's due time in the plan: the session's recorded spacing is measured from it."""


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: float
    """How long until the due time, exactly: an engine on a coarse timer adds `TIMER_SLACK_S`."""
    deadline_ns: int
    """The due time on the session loop's clock (monotonic nanoseconds), for a timer that waits until a moment
    (`replayer.deadline_timer`)."""


@dataclass(frozen=True, slots=True)
class Send:
    planned: PlannedRequest
    lag_us: int
    """How late the request leaves against its due time (0 in closed loop, where nothing is due)."""
    late_after_us: int = 0
    """The lag beyond which it counts as late (see `LATE_SHARE`); 0 in closed loop."""

    @property
    def late(self) -> bool:
        return self.lag_us > self.late_after_us


class SessionLoop:
    """The sessions of one engine process (or locust worker) and the decisions of their loop."""

    def __init__(self, options: ReplayOptions, *, clock: Callable[[], int] = time.perf_counter_ns) -> None:
        """`clock`: monotonic nanoseconds, shared by every process of the machine (a simulated one in tests)."""
        self.options = options
        self._clock = clock
        self.epoch_ns = 0
        """The replay clock's zero on the monotonic clock; the engine sets it when its replay starts."""
        self.rng = random.Random()
        self._typical_spacing_s = 0.0
        """A running mean of sessions' recorded spacing, for a session's first request, which has none."""
        self.sessions: SessionTable[ReplaySession] = SessionTable(
            lambda: ReplaySession(SessionCorrelator(rules=options.carry)), busy=lambda s: s.busy
        )

    def now_s(self) -> float:
        return (self._clock() - self.epoch_ns) / 1e9

    def enqueue(self, planned: PlannedRequest) -> ReplaySession | None:
        """Queues a request on its session; returns the session when it was idle, for the engine to drain."""
        session = self.sessions.get(planned.exchange.session)
        session.queue.append(planned)
        if session.busy:
            return None
        session.busy = True
        return session

    def steps(self, session: ReplaySession) -> Iterator[Wait | Send]:
        """The session's requests in order. Open loop: each leaves at its due time, or, if later, its think time
        after the previous request's answers; closed loop: at once (the engine bounds what is in flight).
        The engine completes each `Send` (every target answered) before it asks for the next step."""
        open_loop = self.options.concurrency is None
        while session.queue:
            planned = session.queue.popleft()
            if not open_loop:
                yield Send(planned, 0)
                session.last_done_s = self.now_s()
                continue
            due_s = planned.due_s
            if session.last_done_s is not None:
                due_s = max(due_s, session.last_done_s + planned.think_s)
            while (delay_s := due_s - self.now_s()) > 0:  # never early, even on a coarse timer
                yield Wait(delay_s, self.epoch_ns + math.ceil(due_s * 1e9))
            lag_s = self.now_s() - due_s
            yield Send(planned, int(lag_s * 1e6), int(self._late_after_s(session, planned) * 1e6))
            # Think time counts from when the answers would have come had the request left on time: the
            # replayer's own lateness must not push the session's later requests (sessions delayed by one
            # busy moment would otherwise stay bunched together, and bunch more at every turn).
            session.last_done_s = self.now_s() - lag_s
        session.busy = False

    def _late_after_s(self, session: ReplaySession, planned: PlannedRequest) -> float:
        if session.last_due_s is None:
            spacing_s = self._typical_spacing_s
        else:
            spacing_s = planned.due_s - session.last_due_s
            self._typical_spacing_s += (spacing_s - self._typical_spacing_s) / 64
        session.last_due_s = planned.due_s
        return max(LATE_FLOOR_S, LATE_SHARE * spacing_s)

    def request_for(self, planned: PlannedRequest, session: ReplaySession, target: str) -> tuple[str, Carried]:
        """The trace id and the request one target is sent: the recorded one, with the values the session
        learned from this target's earlier answers (and what was carried or missing)."""
        carried = Carried(planned.exchange.request)
        if self.options.correlate:
            carried = session.correlator.rewrite(planned.exchange.request, target)
        if (credentials := self.options.credentials) is not None:  # a test account's, in place of the recorded
            credited = credentials.rewrite(planned.exchange, carried.request, target)
            if credited is not carried.request:
                carried = replace(carried, request=credited)
        recorded = planned.exchange.tags.get(TRACE_TAG, "")
        return trace_id_for(self.options.trace_salt, planned.exchange.id, target, recorded=recorded), carried

    def attempts(self) -> AttemptLog:
        return AttemptLog(self.options.retry, self.rng)

    def records(
        self, send: Send, session: ReplaySession, outcomes: list[tuple[str, str, AttemptLog, Carried]]
    ) -> list[ReplayRecord]:
        """One record per target from (target, trace id, attempts, what was carried); the session learns from
        the answers."""
        planned = send.planned
        endpoint = planned.endpoint
        if self.options.correlate:  # a segment the session learned as server-made is a parameter
            endpoint = session.correlator.endpoint(endpoint, planned.exchange.request.path)
        recorded = planned.exchange.response
        recorded_status = recorded.status if recorded else None
        recorded_grpc_status = grpc_status(recorded) if recorded and is_grpc(recorded.headers) else None
        records = [
            ReplayRecord(
                exchange_id=planned.exchange.id, target=target, endpoint=endpoint, attempts=log.attempts,
                response=log.response, schedule_lag_us=send.lag_us, trace_id=trace_id,
                carried=carried.carried, not_carried=list(carried.missing),
                recorded_status=recorded_status, recorded_grpc_status=recorded_grpc_status,
            )
            for target, trace_id, log, carried in outcomes
        ]
        if self.options.correlate:
            session.correlator.observe(planned.exchange, {record.target: record.response for record in records})
        return records


@dataclass(slots=True)
class AttemptLog:
    """One target's attempts at one request under the retry policy. The engine sends, `add`s the outcome, and
    backs off for the seconds `add` returns before sending again; None: the last answer is final."""

    policy: RetryPolicy
    rng: random.Random
    attempts: list[Attempt] = field(default_factory=list)
    response: Response | None = None

    def add(self, attempt: Attempt, response: Response | None) -> float | None:
        self.attempts.append(attempt)
        self.response = response
        if not self.policy.should_retry(attempt, len(self.attempts)):
            return None
        return self.policy.backoff(len(self.attempts), self.rng)
