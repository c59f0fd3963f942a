"""From replay records to a `DiffReport`: group by exchange, compare, count, filter noise, test latency.

Records of one exchange may be far apart in a results file (targets answer
at different speeds), so records wait in `pending` until their exchange has
every expected target, are compared at once, and only counts, a few
examples and latencies are kept: memory grows with endpoints, locations and
exchanges' latencies, never with bodies.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from corpora import Divergence, ReplayRecord
from diff.compare import Difference, Key, compare, outcome
from diff.findings import DiffOptions, DiffReport, DivergenceGroup, EndpointStats, SuppressedLocation, Totals
from diff.latency import PairedLatency, Percentiles, assess, percentiles
from diff.noise import split_signal

ROLES = frozenset({"baseline", "baseline2", "candidate"})
_COMPARED = frozenset({"baseline", "candidate"})
_KIND_ORDER = ("error", "status", "latency", "header", "body")
"""Report order within an endpoint: the most drastic first."""


def analyze(
    records: Iterable[ReplayRecord],
    *,
    options: DiffOptions = DiffOptions(),
    targets: Mapping[str, str] | None = None,
) -> DiffReport:
    """`targets` (name → URL, from the results header) tells which records complete an exchange.

    Without it all three roles are expected; either way an exchange still
    missing a record at the end is compared with what it has.
    """
    expected = _COMPARED | (ROLES & targets.keys()) if targets else ROLES
    tally = _Tally(options.max_examples)
    pending: dict[str, dict[str, ReplayRecord]] = {}
    for record in records:
        group = pending.setdefault(record.exchange_id, {})
        group[record.target] = record
        if expected <= group.keys():
            tally.add(pending.pop(record.exchange_id))
    for group in pending.values():
        tally.add(group)
    return tally.report(options, dict(targets or {}))


def _latency_ms(record: ReplayRecord) -> float | None:
    """The final attempt's duration, for answered requests only: a timeout measures the client, not the server."""
    final = record.final
    return final.duration_us / 1000 if record.response is not None and final is not None else None


@dataclass
class _EndpointTally:
    exchanges: int = 0
    difference_sets: Counter[frozenset[Key]] = field(default_factory=Counter)
    """Exchanges per set of locations where baseline and candidate differed: few distinct sets in practice."""
    noise: Counter[Key] = field(default_factory=Counter)
    examples: dict[Key, list[Divergence]] = field(default_factory=dict)
    latency_ms: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    deltas_ms: list[float] = field(default_factory=list)
    noise_deltas_ms: list[float] = field(default_factory=list)

    def raw(self) -> Counter[Key]:
        counts: Counter[Key] = Counter()
        for keys, exchanges in self.difference_sets.items():
            for key in keys:
                counts[key] += exchanges
        return counts

    def divergent(self, reported: set[Key], kinds: Collection[str] | None = None) -> int:
        """Exchanges with a reported location (of one of `kinds`, if given)."""
        return sum(
            exchanges
            for keys, exchanges in self.difference_sets.items()
            if any(key in reported and (kinds is None or key[0] in kinds) for key in keys)
        )


class _Tally:
    def __init__(self, max_examples: int) -> None:
        self.max_examples = max_examples
        self.endpoints: dict[str, _EndpointTally] = {}
        self.errors: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.exchanges = 0
        self.incomplete = 0
        self.noise_pairs = 0

    def add(self, group: dict[str, ReplayRecord]) -> None:
        self.exchanges += 1
        for target, record in group.items():
            if record.response is None:
                self.errors[target][outcome(record)] += 1
        baseline, candidate = group.get("baseline"), group.get("candidate")
        if baseline is None or candidate is None:
            self.incomplete += 1
            return
        endpoint = self.endpoints.setdefault(baseline.endpoint, _EndpointTally())
        endpoint.exchanges += 1
        for target, record in group.items():
            if (ms := _latency_ms(record)) is not None:
                endpoint.latency_ms[target].append(ms)
        differences = compare(baseline, candidate)
        if differences:
            endpoint.difference_sets[frozenset(d.key for d in differences)] += 1
            for difference in differences:
                self._keep_example(endpoint, baseline, difference)
        _append_delta(endpoint.deltas_ms, baseline, candidate)
        if (baseline2 := group.get("baseline2")) is not None:
            self.noise_pairs += 1
            endpoint.noise.update(d.key for d in compare(baseline, baseline2))
            _append_delta(endpoint.noise_deltas_ms, baseline, baseline2)

    def _keep_example(self, endpoint: _EndpointTally, baseline: ReplayRecord, difference: Difference) -> None:
        examples = endpoint.examples.setdefault(difference.key, [])
        if len(examples) < self.max_examples:
            examples.append(
                Divergence(
                    baseline.exchange_id,
                    baseline.endpoint,
                    difference.kind,
                    difference.location,
                    difference.left,
                    difference.right,
                )
            )

    def report(self, options: DiffOptions, targets: dict[str, str]) -> DiffReport:
        stats: list[EndpointStats] = []
        groups: list[DivergenceGroup] = []
        suppressed: list[SuppressedLocation] = []
        divergent_exchanges = 0
        for name, endpoint in sorted(self.endpoints.items()):
            raw = endpoint.raw()
            reported, quiet = split_signal(raw, endpoint.noise, endpoint.exchanges, options.noise)
            found = [
                DivergenceGroup(
                    name, kind, location, raw[kind, location], endpoint.exchanges, endpoint.examples[kind, location]
                )
                for kind, location in reported
            ]
            suppressed += [
                SuppressedLocation(name, kind, location, raw[kind, location], endpoint.noise[kind, location])
                for kind, location in quiet
            ]
            latency = {
                target: p for target, samples in sorted(endpoint.latency_ms.items()) if (p := percentiles(samples))
            }
            baseline_p50 = latency["baseline"].p50 if "baseline" in latency else 0.0
            paired = assess(endpoint.deltas_ms, endpoint.noise_deltas_ms, baseline_p50, options.latency)
            if paired.regression:
                found.append(_latency_group(name, latency, paired, endpoint.deltas_ms))
            groups += sorted(found, key=lambda g: (_KIND_ORDER.index(g.kind), -g.count, g.location))
            signal = set(reported)
            by_kind = {kind: n for kind in _KIND_ORDER if (n := endpoint.divergent(signal, {kind}))}
            stats.append(EndpointStats(name, endpoint.exchanges, by_kind, latency, paired))
            divergent_exchanges += endpoint.divergent(signal)
        totals = Totals(
            exchanges=self.exchanges,
            compared=sum(endpoint.exchanges for endpoint in self.endpoints.values()),
            incomplete=self.incomplete,
            divergent_exchanges=divergent_exchanges,
            noise_pairs=self.noise_pairs,
        )
        errors = {target: dict(counts) for target, counts in sorted(self.errors.items())}
        return DiffReport(targets, options, totals, stats, groups, suppressed, errors)


def _append_delta(deltas: list[float], reference: ReplayRecord, other: ReplayRecord) -> None:
    reference_ms, other_ms = _latency_ms(reference), _latency_ms(other)
    if reference_ms is not None and other_ms is not None:
        deltas.append(other_ms - reference_ms)


def _latency_group(
    endpoint: str, latency: dict[str, Percentiles], paired: PairedLatency, deltas: list[float]
) -> DivergenceGroup:
    """A latency regression as a divergence: the p50s as the values, the paired test as the detail."""
    assert paired.median_delta_ms is not None and paired.p_value is not None, "a regression has pairs"
    example = Divergence(
        "", endpoint, "latency", "p50", f"{latency['baseline'].p50:.1f} ms", f"{latency['candidate'].p50:.1f} ms"
    )
    noise = "no baseline2" if paired.median_noise_ms is None else f"A/A {paired.median_noise_ms:+.1f} ms"
    detail = f"median {paired.median_delta_ms:+.1f} ms per request ({noise}), {_p(paired.p_value)}"
    return DivergenceGroup(endpoint, "latency", "p50", sum(1 for d in deltas if d > 0), paired.pairs, [example], detail)


def _p(p_value: float) -> str:
    """Below 1e-12 the normal approximation's digits mean nothing (and underflow to 0)."""
    return "p < 1e-12" if p_value < 1e-12 else f"p = {p_value:.1e}"
