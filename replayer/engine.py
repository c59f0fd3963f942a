"""The asyncio engine: drives a schedule through every target at once.

Each planned request is sent to all targets in the same event-loop tick, so
time-dependent behaviour (clocks, caches, load) hits them alike and the
baseline-vs-baseline#2 difference measures exactly the noise the candidate
comparison also contains.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from corpora import ReplayRecord
from replayer.client import TargetClient, Timeouts
from replayer.plan import PlannedRequest, Schedule, Session
from replayer.targets import Target


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    concurrency: int | None = None
    """Closed loop with this many sessions in flight; None replays on the recorded (scaled) timing."""
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(slots=True)
class ReplaySummary:
    planned: int
    completed: int = 0
    lags_us: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0

    def lag_percentile_ms(self, q: float) -> float:
        if not self.lags_us:
            return 0.0
        ordered = sorted(self.lags_us)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

    def to_json(self) -> dict[str, object]:
        return {
            "planned": self.planned,
            "completed": self.completed,
            "elapsed_s": round(self.elapsed_s, 3),
            "schedule_lag_ms": {"p50": self.lag_percentile_ms(0.5), "p99": self.lag_percentile_ms(0.99)},
        }


RecordSink = Callable[[ReplayRecord], None]


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
        self._sink = sink
        self._on_progress = on_progress

    async def run(self, schedule: Schedule) -> ReplaySummary:
        summary = ReplaySummary(planned=schedule.total)
        clients = [TargetClient(t, timeouts=self.options.timeouts) for t in self.targets]
        epoch_ns = time.perf_counter_ns()
        try:
            if self.options.concurrency:
                await self._closed_loop(schedule, clients, epoch_ns, summary)
            else:
                await asyncio.gather(
                    *(self._open_loop_session(s, clients, epoch_ns, summary) for s in schedule.sessions)
                )
        finally:
            summary.elapsed_s = (time.perf_counter_ns() - epoch_ns) / 1e9
            await asyncio.gather(*(client.aclose() for client in clients), return_exceptions=True)
        return summary

    async def _open_loop_session(
        self, session: Session, clients: list[TargetClient], epoch_ns: int, summary: ReplaySummary
    ) -> None:
        for planned in session.requests:
            delay_s = planned.due_s - (time.perf_counter_ns() - epoch_ns) / 1e9
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            lag_us = max(0, (time.perf_counter_ns() - epoch_ns) // 1000 - int(planned.due_s * 1e6))
            await self._fan_out(planned, clients, epoch_ns, lag_us, summary)

    async def _closed_loop(
        self, schedule: Schedule, clients: list[TargetClient], epoch_ns: int, summary: ReplaySummary
    ) -> None:
        queue: asyncio.Queue[Session] = asyncio.Queue()
        for session in schedule.sessions:
            queue.put_nowait(session)

        async def worker() -> None:
            while not queue.empty():
                session = queue.get_nowait()
                for planned in session.requests:
                    await self._fan_out(planned, clients, epoch_ns, 0, summary)

        assert self.options.concurrency
        await asyncio.gather(*(worker() for _ in range(self.options.concurrency)))

    async def _fan_out(
        self,
        planned: PlannedRequest,
        clients: list[TargetClient],
        epoch_ns: int,
        lag_us: int,
        summary: ReplaySummary,
    ) -> None:
        request = planned.exchange.request
        outcomes = await asyncio.gather(*(client.send(request, epoch_ns=epoch_ns) for client in clients))
        for client, (attempt, response) in zip(clients, outcomes):
            self._sink(
                ReplayRecord(
                    exchange_id=planned.exchange.id,
                    target=client.target.name,
                    endpoint=planned.endpoint,
                    attempts=[attempt],
                    response=response,
                    schedule_lag_us=lag_us,
                )
            )
        summary.completed += 1
        summary.lags_us.append(lag_us)
        self._on_progress()
