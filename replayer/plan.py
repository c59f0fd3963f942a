"""Corpus → schedule: which request goes when, and which must wait for which.

Requests of one session stay in recorded order (a later request may depend on
an earlier one's effect); sessions are independent and run concurrently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from corpora import Exchange, endpoint_of


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    exchange: Exchange
    endpoint: str
    due_s: float
    """When to send, in seconds after the replay starts (open-loop modes); ignored in closed loop."""


@dataclass(slots=True)
class Session:
    key: str
    requests: list[PlannedRequest] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Schedule:
    sessions: list[Session]

    @property
    def total(self) -> int:
        return sum(len(session.requests) for session in self.sessions)

    @property
    def span_s(self) -> float:
        return max((s.requests[-1].due_s for s in self.sessions if s.requests), default=0.0)


def plan(exchanges: Iterable[Exchange], *, speed: float = 1.0, limit: int | None = None) -> Schedule:
    """Group by session in order of first appearance; `speed` 2 replays twice as fast as recorded."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    sessions: dict[str, Session] = {}
    first_us: int | None = None
    for count, exchange in enumerate(sorted(exchanges, key=lambda e: e.start_us)):
        if limit is not None and count >= limit:
            break
        if first_us is None:
            first_us = exchange.start_us
        session = sessions.setdefault(exchange.session, Session(exchange.session))
        due_s = (exchange.start_us - first_us) / 1e6 / speed
        session.requests.append(
            PlannedRequest(exchange, endpoint_of(exchange.request.method, exchange.request.path), due_s)
        )
    return Schedule(list(sessions.values()))
