"""Corpus → schedule: which request goes when, and after which.

Planning streams: a corpus of a million exchanges is never held in memory.
Requests of one session stay in recorded order (a later request may depend on
an earlier one's effect) and keep their recorded think time; sessions are
independent and overlap as recorded.
"""

from __future__ import annotations

import fnmatch
import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from replaydiff.corpora import Exchange, endpoint_of
from replaydiff.corpora.weights import with_weights_expanded

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})

REORDER_WINDOW = 4096
"""Recorders write exchanges as they complete, not as they start; this many are re-sorted by start."""


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    exchange: Exchange
    endpoint: str
    due_s: float
    """When to send, in seconds after the replay starts (open-loop modes)."""
    think_s: float = 0.0
    """Recorded pause between the session's previous response and this request, scaled."""


@dataclass(frozen=True, slots=True)
class Pacing:
    """How planned times are derived: recorded timing scaled, or a fixed rate; None for closed loop."""

    speed: float = 1.0
    rate: float | None = None
    """Requests per second in recorded order; think times are then ignored."""

    def __post_init__(self) -> None:
        if self.speed <= 0 or (self.rate is not None and self.rate <= 0):
            raise ValueError("speed and rate must be positive")


@dataclass(frozen=True, slots=True)
class Selection:
    """Which exchanges to replay and how often."""

    filters: tuple[str, ...] = ()
    """Each is a method (`POST`), a path glob (`/api/*`) or an endpoint glob (`GET /api/products/{id}`)."""
    limit: int | None = None
    loops: int = 1
    duration_s: float | None = None
    """Repeat the corpus until this much replay time is planned (overrides `loops`)."""
    weighted: bool = False
    """Replay an exchange with a `weight` tag (from `corpus dedup`) that many times."""

    def matches(self, exchange: Exchange, endpoint: str) -> bool:
        return not self.filters or any(_matches(f, exchange, endpoint) for f in self.filters)


def _matches(pattern: str, exchange: Exchange, endpoint: str) -> bool:
    if pattern.upper() in HTTP_METHODS:
        return exchange.request.method.upper() == pattern.upper()
    if pattern.startswith("/"):
        return fnmatch.fnmatchcase(exchange.request.path, pattern)
    method, _, path = pattern.partition(" ")
    return exchange.request.method.upper() == method.upper() and (
        fnmatch.fnmatchcase(endpoint.partition(" ")[2], path) or fnmatch.fnmatchcase(exchange.request.path, path)
    )


def in_start_order(exchanges: Iterable[Exchange], window: int = REORDER_WINDOW) -> Iterator[Exchange]:
    """Sort a nearly sorted stream in bounded memory."""
    heap: list[tuple[int, int, Exchange]] = []
    for ordinal, exchange in enumerate(exchanges):
        heapq.heappush(heap, (exchange.start_us, ordinal, exchange))
        if len(heap) > window:
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


@dataclass(slots=True)
class _Clock:
    """Per-pass timing state: the offset of this pass and each session's last recorded end."""

    pacing: Pacing
    offset_s: float = 0.0
    first_us: int | None = None
    last_end_us: dict[str, int] = field(default_factory=dict)
    count: int = 0
    last_due_s: float = 0.0

    def place(self, exchange: Exchange) -> tuple[float, float]:
        if self.first_us is None:
            self.first_us = exchange.start_us
        previous_end = self.last_end_us.get(exchange.session)
        self.last_end_us[exchange.session] = exchange.start_us + exchange.duration_us
        self.count += 1
        if self.pacing.rate is not None:
            self.last_due_s = self.offset_s + (self.count - 1) / self.pacing.rate
            return self.last_due_s, 0.0
        think_us = 0 if previous_end is None else max(0, exchange.start_us - previous_end)
        self.last_due_s = self.offset_s + (exchange.start_us - self.first_us) / 1e6 / self.pacing.speed
        return self.last_due_s, think_us / 1e6 / self.pacing.speed


@dataclass(slots=True)
class _Progress:
    produced: int = 0
    done: bool = False
    """The limit or the duration is reached: no more requests, in this pass or any other."""


def plan(
    passes: Iterable[Iterable[Exchange]],
    *,
    pacing: Pacing = Pacing(),
    selection: Selection = Selection(),
    endpoints: Callable[[str, str], str] = endpoint_of,
) -> Iterator[PlannedRequest]:
    """Planned requests in due order, streaming.

    `passes` yields one fresh iterable of the corpus per loop (a file is read
    again rather than kept). Exchange ids and session keys of repeat passes
    get a `~N` suffix so every result stays distinct. `endpoints` names each
    request's endpoint from its method and path (templates learned from the
    corpus, see `corpora.endpoints`).
    """
    progress = _Progress()
    offset_s = 0.0
    for number, exchanges in enumerate(passes):
        if not _wants_pass(number, offset_s, selection):
            return
        clock = _Clock(pacing, offset_s=offset_s)
        yield from _one_pass(exchanges, number, clock, selection, progress, endpoints)
        if progress.done or not clock.count:
            return
        offset_s = clock.last_due_s + (1 / pacing.rate if pacing.rate else 0.001)


def _wants_pass(number: int, offset_s: float, selection: Selection) -> bool:
    if selection.duration_s is None:
        return number < selection.loops
    return number == 0 or offset_s < selection.duration_s


def _one_pass(
    exchanges: Iterable[Exchange],
    number: int,
    clock: _Clock,
    selection: Selection,
    progress: _Progress,
    endpoints: Callable[[str, str], str],
) -> Iterator[PlannedRequest]:
    for exchange in in_start_order(with_weights_expanded(exchanges) if selection.weighted else exchanges):
        endpoint = endpoints(exchange.request.method, exchange.request.path)
        if not selection.matches(exchange, endpoint):
            continue
        if selection.limit is not None and progress.produced >= selection.limit:
            progress.done = True
            return
        if number:
            exchange = replace(exchange, id=f"{exchange.id}~{number}", session=f"{exchange.session}~{number}")
        due, think = clock.place(exchange)
        if selection.duration_s is not None and due > selection.duration_s:
            progress.done = True
            return
        progress.produced += 1
        yield PlannedRequest(exchange, endpoint, due, think)
