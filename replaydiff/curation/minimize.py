"""`corpus minimize`: the fewest exchanges, in whole sessions, that keep every coverage item of the corpus.

Greedy weighted set cover (Chvátal): repeatedly keep the session that covers the most still-missing
coverage per exchange it costs, until nothing is missing; then drop any kept session the others make
redundant (last chosen first). "Missing" counts each coverage item once, plus, per endpoint, the exchanges
still lacking for the latency tests (`latency_samples`, or all the corpus has when it has fewer). Greedy is
within a factor ln(n) of the optimum and in practice close to it; the exact problem is NP-hard. Gains only
shrink as sessions are chosen, so stale gains in the priority queue are re-evaluated lazily (Minoux).

Sessions stay whole, so stateful flows (create, then read by the id the service returned) still replay.
"""

from __future__ import annotations

import heapq
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replaydiff.corpora import CorpusReader
from replaydiff.curation.coverage import CoverageScan, SessionProfile, scan
from replaydiff.curation.streams import CuratedWriter, check_output, record_session, records
from replaydiff.diff.latency import LatencyThresholds
from replaydiff.errors import UserError

LATENCY_SAMPLES = 30
"""Exchanges kept per endpoint (where the corpus has them) so the paired latency test has power: the diff tests
from 20 pairs on, and 30 leaves room for the answers a replay loses."""

TESTABLE_PAIRS = LatencyThresholds().min_pairs
"""Below this many pairs the diff runs no paired latency test on an endpoint."""

LATENCY_STEP = 5
"""Within a budget, latency samples are added in rounds of this many per endpoint, so every endpoint gets
its share before any gets more (water-filling) instead of the cheapest endpoints taking the whole budget."""


@dataclass(slots=True)
class Cover:
    """The outcome of the greedy choice, before anything is written."""

    chosen: list[int]
    """Indexes into the scan's sessions, in choice order."""
    exchanges: int
    items_total: int
    items_kept: int
    missing_items: list[int] = field(default_factory=list)
    short_endpoints: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Endpoint number → (kept, wanted) where the latency floor was not met within the budget."""


@dataclass(slots=True)
class _State:
    need_items: set[int]
    need_samples: dict[int, int]
    budget: int | None
    used: int = 0

    def gain(self, profile: SessionProfile) -> int:
        covered = len(profile.items & self.need_items) if self.need_items else 0
        samples = sum(
            min(count, self.need_samples.get(endpoint, 0)) for endpoint, count in profile.endpoints.items()
        ) if self.need_samples else 0  # fmt: skip
        return covered + samples

    def take(self, profile: SessionProfile) -> None:
        self.need_items -= profile.items
        for endpoint, count in profile.endpoints.items():
            if endpoint in self.need_samples:
                left = self.need_samples[endpoint] - count
                if left > 0:
                    self.need_samples[endpoint] = left
                else:
                    del self.need_samples[endpoint]
        self.used += profile.exchanges

    def fits(self, profile: SessionProfile) -> bool:
        return self.budget is None or self.used + profile.exchanges <= self.budget


def _greedy(sessions: Sequence[SessionProfile], state: _State, chosen: list[int]) -> None:
    taken = set(chosen)
    heap = [
        (-gain / profile.exchanges, index, gain)
        for index, profile in enumerate(sessions)
        if index not in taken and (gain := state.gain(profile)) > 0
    ]
    heapq.heapify(heap)
    while heap and (state.need_items or state.need_samples):
        _, index, stale_gain = heapq.heappop(heap)
        profile = sessions[index]
        if not state.fits(profile):
            continue
        gain = state.gain(profile)
        if gain == 0:
            continue
        if gain < stale_gain and heap and -heap[0][0] > gain / profile.exchanges:
            heapq.heappush(heap, (-gain / profile.exchanges, index, gain))
            continue
        state.take(profile)
        chosen.append(index)


def _prune(sessions: Sequence[SessionProfile], chosen: list[int], wanted: dict[int, int]) -> list[int]:
    """Drops sessions whose every item and latency sample other kept sessions also provide."""
    item_counts: dict[int, int] = {}
    samples: dict[int, int] = {}
    for index in chosen:
        for item in sessions[index].items:
            item_counts[item] = item_counts.get(item, 0) + 1
        for endpoint, count in sessions[index].endpoints.items():
            samples[endpoint] = samples.get(endpoint, 0) + count
    kept = list(chosen)
    for index in reversed(chosen):
        profile = sessions[index]
        if all(item_counts[item] > 1 for item in profile.items) and all(
            samples[endpoint] - count >= wanted.get(endpoint, 0) for endpoint, count in profile.endpoints.items()
        ):
            kept.remove(index)
            for item in profile.items:
                item_counts[item] -= 1
            for endpoint, count in profile.endpoints.items():
                samples[endpoint] -= count
    return kept


def _still_wanted(sessions: Sequence[SessionProfile], chosen: list[int], wanted: dict[int, int]) -> dict[int, int]:
    have: dict[int, int] = {}
    for index in chosen:
        for endpoint, count in sessions[index].endpoints.items():
            have[endpoint] = have.get(endpoint, 0) + count
    return {endpoint: count - have.get(endpoint, 0) for endpoint, count in wanted.items() if count > have.get(endpoint, 0)}


def _fill_testable(coverage: CoverageScan, state: _State, chosen: list[int], wanted: dict[int, int]) -> None:
    """Within the budget, brings whole endpoints to the diff's minimum of pairs, the cheapest first.

    An endpoint below that minimum gets no latency test at all, so a budget spread evenly can leave every
    endpoint just short and buy nothing. Cheapest: the most exchanges of the endpoint per exchange of the
    sessions holding it. An endpoint the remaining budget cannot complete is given back its sessions.
    """
    sessions = coverage.sessions
    holding: dict[int, int] = {}
    for profile in sessions:
        for endpoint in profile.endpoints:
            holding[endpoint] = holding.get(endpoint, 0) + profile.exchanges
    density = {e: coverage.endpoint_totals[e] / holding[e] for e in wanted if holding.get(e)}
    for endpoint in sorted(density, key=lambda e: (-density[e], e)):
        target = {endpoint: min(TESTABLE_PAIRS, wanted[endpoint])}
        state.need_samples = _still_wanted(sessions, chosen, target)
        if not state.need_samples:
            continue
        before, used = len(chosen), state.used
        _greedy(sessions, state, chosen)
        if _still_wanted(sessions, chosen, target):
            del chosen[before:]
            state.used = used


def choose(coverage: CoverageScan, *, latency_samples: int = LATENCY_SAMPLES, max_exchanges: int | None = None) -> Cover:
    """Which sessions to keep. Within `max_exchanges`, coverage items come first; then as many endpoints as
    the budget allows get the pairs a latency test needs; then samples are raised evenly towards the floor."""
    sessions = coverage.sessions
    universe = coverage.items()
    wanted = {endpoint: min(latency_samples, int(total)) for endpoint, total in enumerate(coverage.endpoint_totals)}
    wanted = {endpoint: count for endpoint, count in wanted.items() if count > 0}
    chosen: list[int] = []
    state = _State(set(universe), dict(wanted), None)
    _greedy(sessions, state, chosen)
    chosen = _prune(sessions, chosen, wanted)
    size = sum(sessions[index].exchanges for index in chosen)
    if max_exchanges is not None and size > max_exchanges:
        # Items first, within the budget; then latency samples with what the budget leaves.
        chosen = []
        state = _State(set(universe), {}, None)
        _greedy(sessions, state, chosen)
        chosen = _prune(sessions, chosen, {})
        state = _State(set(universe), {}, max_exchanges)
        if sum(sessions[index].exchanges for index in chosen) <= max_exchanges:
            for index in chosen:
                state.take(sessions[index])
        else:
            chosen = []
            _greedy(sessions, state, chosen)
        missing = state.need_items
        state.need_items = set()
        _fill_testable(coverage, state, chosen, wanted)
        for level in range(LATENCY_STEP, max(wanted.values(), default=0) + LATENCY_STEP, LATENCY_STEP):
            state.need_samples = _still_wanted(sessions, chosen, {e: min(level, n) for e, n in wanted.items()})
            _greedy(sessions, state, chosen)
        state.need_items = missing
        size = state.used
    kept_samples: dict[int, int] = {}
    kept_items: set[int] = set()
    for index in chosen:
        kept_items |= sessions[index].items
        for endpoint, count in sessions[index].endpoints.items():
            kept_samples[endpoint] = kept_samples.get(endpoint, 0) + count
    return Cover(
        chosen=chosen,
        exchanges=size,
        items_total=len(universe),
        items_kept=len(kept_items & universe),
        missing_items=sorted(universe - kept_items),
        short_endpoints={
            endpoint: (kept_samples.get(endpoint, 0), count)
            for endpoint, count in wanted.items()
            if kept_samples.get(endpoint, 0) < count
        },
    )


@dataclass(slots=True)
class Minimized:
    coverage: CoverageScan
    cover: Cover
    output: Path
    written: int

    @property
    def reduction(self) -> float:
        return self.coverage.exchanges / self.written if self.written else float("inf")


def minimize(
    corpus: Path, output: Path, *, latency_samples: int = LATENCY_SAMPLES, max_exchanges: int | None = None
) -> Minimized:
    check_output(output, corpus)
    coverage = scan(corpus)
    if len(coverage.sessions) == 1:
        warnings.warn(
            f"{corpus}: all {coverage.exchanges} exchanges are one session, which is kept whole; without session "
            "keys (or with one for everything) there is nothing to choose from",
            stacklevel=2,
        )
    cover = choose(coverage, latency_samples=latency_samples, max_exchanges=max_exchanges)
    if not cover.chosen:
        smallest = min(profile.exchanges for profile in coverage.sessions)
        raise UserError(
            f"{corpus}: no whole session fits in --max-exchanges {max_exchanges} (the smallest session has "
            f"{smallest} exchanges); raise --max-exchanges"
        )
    keep = {coverage.sessions[index].key for index in cover.chosen}
    curation = {
        "job": "minimize",
        "exchanges_before": coverage.exchanges,
        "coverage": {"items": cover.items_total, "kept": cover.items_kept},
        "latency_samples": latency_samples,
        "max_exchanges": max_exchanges,
    }
    with CuratedWriter(output, sources=[corpus], curation=curation) as writer:
        for record in records(corpus, quiet=True):
            if record_session(record) in keep:
                writer.write(record)
        written = writer.count
    return Minimized(coverage, cover, output, written)


def curation_note(corpus: Path) -> dict[str, Any] | None:
    """What a curated corpus's header says it kept of its source, with its size: for nightly reports."""
    reader = CorpusReader(corpus)
    curation = reader.header.get("curation")
    if not isinstance(curation, dict):
        return None
    return {**curation, "exchanges": reader.count()}


def describe_curation(coverage: dict[str, Any] | None) -> str:
    """`corpus: 342 of 3,421 exchanges (minimize), 153 of 153 coverage items (100%)`, for a curated corpus."""
    if not coverage:
        return ""
    before = coverage.get("exchanges_before")
    line = f"corpus: {coverage.get('exchanges', 0):,}" + (f" of {before:,}" if isinstance(before, int) else "")
    line += f" exchanges ({coverage.get('job', 'curated')})"
    items = coverage.get("coverage")
    if isinstance(items, dict) and items.get("items"):
        line += f", {items['kept']} of {items['items']} coverage items ({items['kept'] / items['items']:.0%})"
    return line
