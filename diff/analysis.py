"""From replay records to a `DiffReport`: group by exchange, compare, count, filter noise, test latency.

The replayer writes the records of one exchange next to each other, so an
exchange waits in `pending` only until its last expected target arrives;
a window of `MAX_PENDING` exchanges tolerates interleaving from merged or
hand-made files, and an exchange pushed out of it is compared with what it
has. Only counts, a few examples and a bounded sample of latencies are kept,
so memory depends on endpoints and locations, never on the file's size.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace

import re
from pathlib import Path

import orjson

from replaydiff.corpora import Divergence, ReplayRecord, ResultsReader, Response
from replaydiff.corpora.endpoints import is_grpc_endpoint, learn_endpoints
from replaydiff.corpora.protobuf import ProtoSchema
from replaydiff.diff.causes import bounded, find_causes
from replaydiff.diff.compare import is_call, compare, grpc_method, outcome
from replaydiff.diff.difference import Difference, Key
from replaydiff.diff.excerpt import response_text
from replaydiff.diff.messages import call_text
from replaydiff.diff.fidelity import FidelityTally
from replaydiff.diff.findings import (
    LATE_MS,
    DiffOptions,
    DiffReport,
    DivergenceGroup,
    EndpointStats,
    Example,
    SuppressedLocation,
    Totals,
)
from replaydiff.diff.latency import (
    PairedLatency,
    Percentiles,
    Reservoir,
    TailLatency,
    assess,
    assess_tail,
    histogram,
    log_edges,
    percentiles,
)
from replaydiff.diff.noise import split_signal

ROLES = ("baseline", "baseline2", "candidate")
"""Also the column order of latency samples."""
_BASELINE, _BASELINE2, _CANDIDATE = range(3)
_COMPARED = frozenset({"baseline", "candidate"})
_KIND_ORDER = ("error", "status", "latency", "retry", "upstream", "header", "body")
"""Report order within an endpoint: the most drastic first."""
MAX_PENDING = 10_000
"""Exchanges waiting for a missing target's record: bounds memory on files whose records are not adjacent."""


def analyze(
    records: Iterable[ReplayRecord],
    *,
    options: DiffOptions = DiffOptions(),
    targets: Mapping[str, str] | None = None,
    max_pending: int = MAX_PENDING,
) -> DiffReport:
    """`targets` (name → URL, from the results header) tells which records complete an exchange.

    Without it all three roles are expected; either way an exchange still
    missing a record at the end is compared with what it has.
    """
    expected = _COMPARED | (set(ROLES) & targets.keys()) if targets else set(ROLES)
    tally = _Tally(options)
    pending: dict[str, dict[str, ReplayRecord]] = {}
    for record in records:
        group = pending.setdefault(record.exchange_id, {})
        group[record.target] = record
        if expected <= group.keys():
            tally.add(pending.pop(record.exchange_id))
        elif len(pending) > max_pending:
            tally.add(pending.pop(next(iter(pending))))  # the oldest: its missing record is not coming
    for group in pending.values():
        tally.add(group)
    return tally.report(dict(targets or {}))


SchemaSource = Callable[[Mapping[str, str]], ProtoSchema | None]
"""Given the results' targets (name → URL), a schema for their gRPC messages, or None (e.g. reflection)."""


def analyze_results(
    path: Path | str, *, options: DiffOptions = DiffOptions(), schema_source: SchemaSource | None = None
) -> DiffReport:
    """A results file in two streaming passes: endpoint templates learned from its stamped endpoints, then
    `analyze`. Learning again what the replayer already learned changes nothing; it matters for results
    stamped by an older replayer or by another engine, and keeps `diff`, `run` and `nightly` alike.
    `schema_source` is asked for a schema only when the file holds gRPC calls and `options` has none."""
    grpc_calls: Counter[str] = Counter()
    learned = learn_endpoints(stamped_paths(ResultsReader(path), grpc_calls))
    reader = ResultsReader(path)
    options = replace(options, rules=options.rules.with_learned(learned))
    targets = reader.header.get("targets") or None
    if grpc_calls and options.schema is None and schema_source is not None:
        options = replace(options, schema=schema_source(targets or {}))
    return analyze(reader, options=options, targets=targets)


_STAMPED = re.compile(rb'"endpoint":\s*("(?:[^"\\]|\\.)*")')
"""A record's top-level endpoint: the first such member of its line, since a string value's quotes are escaped."""


def stamped_paths(reader: ResultsReader, grpc_calls: Counter[str] | None = None) -> Counter[str]:
    """The path part of every record's endpoint, found without parsing the records (a third of the cost);
    gRPC endpoints, never templated, are counted in `grpc_calls` instead."""
    paths: Counter[str] = Counter()
    for line in reader.raw_records():
        if (found := _STAMPED.search(line)) is None:
            continue  # a malformed record: the analysis pass reports it
        try:
            endpoint = orjson.loads(found.group(1))
        except ValueError:
            continue
        if is_grpc_endpoint(str(endpoint)):
            if grpc_calls is not None:
                grpc_calls[str(endpoint)] += 1
            continue
        paths[str(endpoint).partition(" ")[2]] += 1
    return paths


def _latency_ms(record: ReplayRecord | None) -> float | None:
    """The final attempt's duration, for answered requests only: a timeout measures the client, not the server."""
    if record is None or record.response is None or (final := record.final) is None:
        return None
    return final.duration_us / 1000


@dataclass
class _EndpointTally:
    latency: Reservoir
    exchanges: int = 0
    difference_sets: Counter[frozenset[Key]] = field(default_factory=Counter)
    """Exchanges per set of locations where baseline and candidate differed: few distinct sets in practice."""
    noise: Counter[Key] = field(default_factory=Counter)
    examples: dict[Key, list[Example]] = field(default_factory=dict)
    notes: dict[Key, str] = field(default_factory=dict)
    """How a location's values were read, when a reader must know (`Difference.note`)."""

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
    def __init__(self, options: DiffOptions) -> None:
        self.options = options
        self.endpoints: dict[str, _EndpointTally] = {}
        self.errors: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.exchanges = 0
        self.incomplete = 0
        self.noise_pairs = 0
        self.late = 0
        self._templates: dict[str, str] = {}
        self.fidelity = FidelityTally()

    def _endpoint(self, stamped: str) -> str:
        """The replayer's endpoint, re-templated once per distinct string when the user gave patterns."""
        if (endpoint := self._templates.get(stamped)) is None:
            endpoint = self._templates[stamped] = self.options.rules.patterns.retemplate(stamped)
        return endpoint

    def add(self, group: dict[str, ReplayRecord]) -> None:
        self.exchanges += 1
        for target, record in group.items():
            if record.response is None:
                self.errors[target][outcome(record)] += 1
        baseline, candidate = group.get("baseline"), group.get("candidate")
        if baseline is None or candidate is None:
            self.incomplete += 1
            return
        name = self._endpoint(baseline.endpoint)
        rules = self.options.rules.for_endpoint(name)
        if (endpoint := self.endpoints.get(name)) is None:
            endpoint = self.endpoints[name] = _EndpointTally(Reservoir(self.options.latency_samples))
        endpoint.exchanges += 1
        self.fidelity.add(name, group)
        self.late += baseline.schedule_lag_us > LATE_MS * 1000
        baseline2 = group.get("baseline2")
        endpoint.latency.add((_latency_ms(baseline), _latency_ms(baseline2), _latency_ms(candidate)))
        schema = self.options.schema
        differences = compare(baseline, candidate, rules, schema)
        if differences:
            endpoint.difference_sets[frozenset(d.key for d in differences)] += 1
            for difference in differences:
                self._keep_example(endpoint, name, baseline, candidate, difference)
        if baseline2 is not None:
            self.noise_pairs += 1
            endpoint.noise.update(d.key for d in compare(baseline, baseline2, rules, schema))

    def _keep_example(
        self,
        endpoint: _EndpointTally,
        name: str,
        baseline: ReplayRecord,
        candidate: ReplayRecord,
        difference: Difference,
    ) -> None:
        examples = endpoint.examples.setdefault(difference.key, [])
        if difference.note:
            endpoint.notes.setdefault(difference.key, difference.note)
        if len(examples) < self.options.max_examples:
            found = Divergence(
                baseline.exchange_id, name, difference.kind, difference.location, difference.left, difference.right
            )
            schema = self.options.schema
            bodies = _body(baseline.response, baseline, schema), _body(candidate.response, baseline, schema)
            examples.append(bounded(Example(found, *bodies)))

    def report(self, targets: dict[str, str]) -> DiffReport:
        stats: list[EndpointStats] = []
        groups: list[DivergenceGroup] = []
        suppressed: list[SuppressedLocation] = []
        divergent_exchanges = 0
        for name, endpoint in sorted(self.endpoints.items()):
            raw = endpoint.raw()
            reported, quiet = split_signal(raw, endpoint.noise, endpoint.exchanges, self.options.noise)
            found = [
                DivergenceGroup(
                    name, kind, location, raw[kind, location], endpoint.exchanges, endpoint.examples[kind, location],
                    endpoint.notes.get((kind, location), ""),
                )
                for kind, location in reported
            ]
            suppressed += [
                SuppressedLocation(name, kind, location, raw[kind, location], endpoint.noise[kind, location])
                for kind, location in quiet
            ]
            latency_stats = self._latency(name, endpoint)
            found += _latency_groups(latency_stats)
            groups += sorted(found, key=lambda g: (_KIND_ORDER.index(g.kind), -g.count, g.location))
            signal = set(reported)
            by_kind = {kind: n for kind in _KIND_ORDER if (n := endpoint.divergent(signal, {kind}))}
            stats.append(replace(latency_stats, divergent_by_kind=by_kind))
            divergent_exchanges += endpoint.divergent(signal)
        totals = Totals(
            exchanges=self.exchanges,
            compared=sum(endpoint.exchanges for endpoint in self.endpoints.values()),
            incomplete=self.incomplete,
            divergent_exchanges=divergent_exchanges,
            noise_pairs=self.noise_pairs,
            late=self.late,
        )
        errors = {target: dict(counts) for target, counts in sorted(self.errors.items())}
        return DiffReport(targets, self.options, totals, stats, groups, suppressed, errors, find_causes(groups),
                          fidelity=self.fidelity.result())

    def _latency(self, name: str, endpoint: _EndpointTally) -> EndpointStats:
        """Percentiles, the paired median test, the tail test and plot data, from the endpoint's latency sample."""
        sample = endpoint.latency
        columns = {role: sample.column(index) for index, role in enumerate(ROLES)}
        latency = {role: p for role, samples in columns.items() if (p := percentiles(samples))}
        baseline_p50 = latency["baseline"].p50 if "baseline" in latency else 0.0
        thresholds = self.options.latency
        deltas = [c - b for b, c in sample.paired(_BASELINE, _CANDIDATE)]
        noise = [b2 - b for b, b2 in sample.paired(_BASELINE, _BASELINE2)]
        paired = assess(deltas, noise, baseline_p50, thresholds)
        control = _BASELINE2 if noise else _BASELINE
        aligned = [
            (b, x, c)
            for s in sample.samples
            if (b := s[_BASELINE]) is not None and (x := s[control]) is not None and (c := s[_CANDIDATE]) is not None
        ]
        tail = assess_tail(aligned, thresholds)
        every = [value for samples in columns.values() for value in samples]
        edges = log_edges(every) if every else []
        histograms = {role: histogram(samples, edges) for role, samples in columns.items() if samples and edges}
        return EndpointStats(name, endpoint.exchanges, {}, latency, paired, tail, histograms, edges)


def _body(response: Response | None, record: ReplayRecord, schema: ProtoSchema | None) -> str:
    """An answer for reading; a gRPC one with its trailers after its headers and its messages decoded."""
    if response is None:
        return "(no response)"
    if is_call(response):
        text = response_text(response.status, response.reason, response.headers + response.trailers, b"")
        return text.removesuffix("<empty>") + call_text(response, grpc_method(record, schema))
    return response_text(response.status, response.reason, response.headers, response.body)


def _latency_groups(stats: EndpointStats) -> list[DivergenceGroup]:
    """A median shift, or else a regression at the tail only: one latency divergence per endpoint at most."""
    if stats.paired.regression:
        return [_median_group(stats.endpoint, stats.latency, stats.paired)]
    if stats.tail is not None and stats.tail.regression:
        return [_tail_group(stats.endpoint, stats.tail)]
    return []


def _latency_example(endpoint: str, location: str, baseline_ms: float, candidate_ms: float) -> list[Example]:
    """No exchange and no bodies: a latency divergence is a property of the endpoint's distribution."""
    values = f"{baseline_ms:.1f} ms", f"{candidate_ms:.1f} ms"
    return [Example(Divergence("", endpoint, "latency", location, *values), "", "")]


def _median_group(endpoint: str, latency: dict[str, Percentiles], paired: PairedLatency) -> DivergenceGroup:
    """The p50s as the values, the paired test as the detail."""
    assert paired.median_delta_ms is not None and paired.p_value is not None, "a regression has pairs"
    noise = "no baseline2" if paired.median_noise_ms is None else f"A/A {paired.median_noise_ms:+.1f} ms"
    detail = f"median {paired.median_delta_ms:+.1f} ms per request ({noise}), {_p(paired.p_value)}"
    example = _latency_example(endpoint, "p50", latency["baseline"].p50, latency["candidate"].p50)
    return DivergenceGroup(endpoint, "latency", "p50", paired.slower, paired.pairs, example, detail)


def _tail_group(endpoint: str, tail: TailLatency) -> DivergenceGroup:
    """The quantiles as the values; the count is the requests only the candidate made slow."""
    detail = (
        f"only the candidate above the baseline's {tail.label} ({tail.baseline_ms:.1f} ms) on {tail.candidate_only} "
        f"requests, by {tail.excess_ms:+.1f} ms (median); only baseline2 on {tail.control_only}; {_p(tail.p_value)}"
    )
    example = _latency_example(endpoint, tail.label, tail.baseline_ms, tail.candidate_ms)
    pairs = tail.candidate_only + tail.control_only
    return DivergenceGroup(endpoint, "latency", tail.label, tail.candidate_only, pairs, example, detail)


def _p(p_value: float) -> str:
    """Below 1e-12 the normal approximation's digits mean nothing (and underflow to 0)."""
    return "p < 1e-12" if p_value < 1e-12 else f"p = {p_value:.1e}"
