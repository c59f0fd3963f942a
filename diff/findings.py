"""What a diff found: the `DiffReport` that the text report renders and the JSON report serializes.

Plain data, no decisions: `diff.analysis` fills it in, `diff.causes` groups
its divergences into `Finding`s. The JSON form is versioned (`schema`)
because CI jobs and dashboards parse it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
import hashlib
from typing import Any, Literal

from replaydiff.corpora import Divergence
from replaydiff.corpora.model import DivergenceKind
from replaydiff.corpora.protobuf import ProtoSchema
from replaydiff.diff.fidelity import Fidelity
from replaydiff.diff.latency import LatencyThresholds, PairedLatency, Percentiles, TailLatency
from replaydiff.diff.noise import NoiseThresholds
from replaydiff.diff.rules import Rules

LATE_MS = 50
"""A request sent this much after its planned time means the replaying machine could not keep up."""
LATE_SHARE = 0.05
"""Above this share of late requests, the machine's own load is in every latency measured."""

INCONCLUSIVE = "inconclusive"
"""The `--fail-on` word for untested endpoints (see `diff.fidelity`); on by default."""

SCHEMA = "replaydiff-diff/3"
"""Bumped when a field changes meaning or goes away; new fields may appear within a version (docs/report-schema.md)."""


@dataclass(frozen=True)
class DiffOptions:
    noise: NoiseThresholds = NoiseThresholds()
    latency: LatencyThresholds = LatencyThresholds()
    rules: Rules = field(default_factory=Rules)
    max_examples: int = 3
    """Examples kept per divergence: enough to see a pattern, few enough to keep memory flat."""
    latency_samples: int = 50_000
    """Exchanges per endpoint whose latencies are kept (a uniform sample beyond): bounds memory, not accuracy."""
    schema: ProtoSchema | None = None
    """Decodes gRPC messages by field name (`diff.messages`); without it they are read by wire format."""

    def __post_init__(self) -> None:
        if self.max_examples < 1 or self.latency_samples < 1:
            raise ValueError(f"max_examples={self.max_examples}, latency_samples={self.latency_samples} must be ≥ 1")

    def to_json(self) -> dict[str, Any]:
        return {
            "relative_noise": self.noise.relative,
            "absolute_noise": self.noise.absolute,
            "latency_abs_ms": self.latency.absolute_ms,
            "latency_rel": self.latency.relative,
            "latency_min_pairs": self.latency.min_pairs,
            "latency_alpha": self.latency.alpha,
            "latency_tail_quantile": self.latency.tail_quantile,
            "rules": len(self.rules),
            "endpoint_patterns": len(self.rules.patterns),
            "learned_templates": len(self.rules.patterns.learned.positions),
            "proto_schema": self.schema.source if self.schema is not None else None,
        }


@dataclass(frozen=True, slots=True)
class Example:
    """One diverging exchange: the located values, and both bodies for a reader to see them in context."""

    divergence: Divergence
    baseline_body: str
    candidate_body: str

    def to_json(self) -> dict[str, Any]:
        return {**self.divergence.to_json(), "baseline_body": self.baseline_body, "candidate_body": self.candidate_body}


@dataclass(frozen=True, slots=True)
class DivergenceGroup:
    """Every exchange of one endpoint that diverged at one (kind, location): one line of the report."""

    endpoint: str
    kind: DivergenceKind
    location: str
    count: int
    """Exchanges that diverged there (for latency: pairs where the candidate was slower)."""
    total: int
    """Exchanges of the endpoint that were compared (for latency: pairs)."""
    examples: list[Example]
    """At least one."""
    detail: str = ""

    @property
    def fingerprint(self) -> str:
        return self.examples[0].divergence.fingerprint

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "endpoint": self.endpoint,
            "kind": self.kind,
            "location": self.location,
            "count": self.count,
            "total": self.total,
            "detail": self.detail,
            "examples": [example.to_json() for example in self.examples],
        }


Severity = Literal["critical", "high", "medium", "low"]


@dataclass(frozen=True, slots=True)
class Finding:
    """Divergences with one cause: one line of the report, with its reach and a few examples."""

    title: str
    kind: DivergenceKind
    severity: Severity
    rank: int
    """Lower is more severe; ties are broken by `exchanges` (see `diff.causes`)."""
    members: list[DivergenceGroup]
    exchanges: int
    """Exchanges of its endpoints that diverged this way (an exchange counted once per endpoint)."""
    total: int
    """Exchanges compared on its endpoints (for latency: pairs)."""
    changes: dict[str, list[str]] = field(default_factory=dict)
    """For documents and headers: `removed`, `added`, `retyped`, `changed` → locations."""
    examples: list[Example] = field(default_factory=list)
    """A few, from distinct endpoints, answers cut to a bounded excerpt."""
    confirmation: str | None = None
    """`confirmed`, `noise` or `flaky` after confirmation resends; `None` when none were sent."""

    @property
    def endpoints(self) -> list[str]:
        return list(dict.fromkeys(group.endpoint for group in self.members))

    @property
    def fingerprints(self) -> list[str]:
        return [group.fingerprint for group in self.members]

    @property
    def id(self) -> str:
        """Stable while its member fingerprints are: to refer to a finding across runs."""
        return hashlib.sha256("\n".join(sorted(self.fingerprints)).encode()).hexdigest()[:12]

    @property
    def share(self) -> float:
        return self.exchanges / self.total if self.total else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "kind": self.kind,
            "severity": self.severity,
            "endpoints": self.endpoints,
            "fingerprints": self.fingerprints,
            "exchanges": self.exchanges,
            "total": self.total,
            "changes": self.changes,
            "confirmation": self.confirmation,
            "examples": [example.to_json() for example in self.examples],
        }


@dataclass(frozen=True, slots=True)
class SuppressedLocation:
    """A place where baseline and candidate differed no more than baseline differed from itself."""

    endpoint: str
    kind: DivergenceKind
    location: str
    raw: int
    noise: int
    resent: int = 0
    """Confirmation resends on which the baselines differed there too (then `noise` counts the replay only)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "kind": self.kind,
            "location": self.location,
            "raw": self.raw,
            "noise": self.noise,
            "resent": self.resent,
        }


@dataclass(frozen=True, slots=True)
class EndpointStats:
    endpoint: str
    exchanges: int
    """Compared: both baseline and candidate answered or failed."""
    divergent_by_kind: dict[str, int]
    """Exchanges with at least one reported divergence of that kind."""
    latency: dict[str, Percentiles]
    """Per target, over its successful answers."""
    paired: PairedLatency
    tail: TailLatency | None
    """`None` with too few pairs for a tail to mean anything."""
    histograms: dict[str, list[int]] = field(default_factory=dict)
    """Per target, answers per bin of `histogram_edges_ms`: the HTML report's latency plots."""
    histogram_edges_ms: list[float] = field(default_factory=list)

    @property
    def divergent(self) -> int:
        """Exchanges with at least one reported divergence (an exchange can have several kinds)."""
        return max(self.divergent_by_kind.values(), default=0)

    @property
    def latency_regression(self) -> bool:
        return self.paired.regression or (self.tail is not None and self.tail.regression)

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "exchanges": self.exchanges,
            "divergent_by_kind": self.divergent_by_kind,
            "latency_ms": {target: stats.to_json() for target, stats in self.latency.items()},
            "paired_latency": self.paired.to_json(),
            "tail_latency": self.tail.to_json() if self.tail else None,
            "histogram_ms": {"edges": self.histogram_edges_ms, "counts": self.histograms},
        }


@dataclass(frozen=True, slots=True)
class Totals:
    exchanges: int
    compared: int
    incomplete: int
    """Exchanges missing a baseline or a candidate record (a replay that stopped early): not compared."""
    divergent_exchanges: int
    noise_pairs: int
    """Compared exchanges that also had a baseline2 record, from which noise was learned."""
    late: int = 0
    """Compared exchanges the replayer sent more than `LATE_MS` after their planned time."""

    def to_json(self) -> dict[str, int]:
        return {
            "exchanges": self.exchanges,
            "compared": self.compared,
            "incomplete": self.incomplete,
            "divergent_exchanges": self.divergent_exchanges,
            "noise_pairs": self.noise_pairs,
            "late": self.late,
        }


@dataclass(frozen=True, slots=True)
class DiffReport:
    targets: dict[str, str]
    options: DiffOptions
    totals: Totals
    endpoints: list[EndpointStats]
    divergences: list[DivergenceGroup]
    suppressed: list[SuppressedLocation]
    errors: dict[str, dict[str, int]] = field(default_factory=dict)
    """Failed records per target and error kind (`timeout`, `reset`, …)."""
    findings: list[Finding] = field(default_factory=list)
    """The divergences grouped by cause, ranked (`diff.causes`): every divergence is in exactly one."""
    confirmations: dict[str, str] = field(default_factory=dict)
    """Fingerprint → `confirmed`, `noise` (then moved to `suppressed`) or `flaky`, for each divergence that
    confirmation resends judged."""
    confirm_times: int = 0
    """How often each request behind a rare divergence was resent to every target; 0: no confirmation."""
    fidelity: Fidelity = field(default_factory=Fidelity)
    """How faithfully the baselines reproduced the recording, per endpoint (`diff.fidelity`)."""

    @property
    def noise_learned(self) -> bool:
        return self.totals.noise_pairs > 0

    @property
    def verdict(self) -> Literal["same", "divergent", "inconclusive"]:
        """Divergences win (they were found on what was tested); else a replay that could not test some
        endpoint is inconclusive, never the same."""
        if self.divergences:
            return "divergent"
        return "inconclusive" if self.fidelity.inconclusive else "same"

    def inconclusive_fails(self, kinds: Collection[str] | None = None) -> bool:
        """Whether an untested endpoint fails the run: unless `--fail-on` leaves `inconclusive` out."""
        return self.fidelity.inconclusive and (kinds is None or INCONCLUSIVE in kinds)

    def warnings(self) -> list[str]:
        """What limits the verdict's meaning: unlearned noise, exchanges not compared, failures, an overloaded replayer."""
        lines = []
        if not self.noise_learned:
            lines.append("no baseline2 records: noise was not learned, so timestamps and ids show up as divergences")
        if self.totals.incomplete:
            lines.append(f"{self.totals.incomplete:,} exchanges without a baseline or candidate record, not compared")
        for target, kinds in self.errors.items():
            lines.append(f"{target} failed: " + ", ".join(f"{kind} {count:,}" for kind, count in kinds.items()))
        if self.totals.compared and self.totals.late / self.totals.compared > LATE_SHARE:
            lines.append(
                f"the replayer sent {self.totals.late:,} of {self.totals.compared:,} exchanges more than {LATE_MS} ms "
                "late: the machine was overloaded, so latency figures measure it as much as the targets"
            )
        return lines

    def failing(self, kinds: Collection[str] | None = None) -> list[DivergenceGroup]:
        """The divergences that fail a run: all of them, or those of `kinds` (`--fail-on`); never a flaky one."""
        return [
            group
            for group in self.divergences
            if (kinds is None or group.kind in kinds) and self.confirmations.get(group.fingerprint) != "flaky"
        ]

    def failing_findings(self, kinds: Collection[str] | None = None) -> list[Finding]:
        """The findings with a member that fails the run."""
        failing = {id(group) for group in self.failing(kinds)}
        return [f for f in self.findings if any(id(group) in failing for group in f.members)]

    def to_json(self, *, fail_on: Collection[str] | None = None) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "verdict": self.verdict,
            "failed": bool(self.failing(fail_on)) or self.inconclusive_fails(fail_on),
            "fail_on": sorted(fail_on) if fail_on is not None else None,
            "targets": self.targets,
            "options": self.options.to_json(),
            "noise_learned": self.noise_learned,
            "totals": self.totals.to_json(),
            "errors": self.errors,
            "findings": [finding.to_json() for finding in self.findings],
            "confirm_times": self.confirm_times,
            "confirmations": self.confirmations,
            "endpoints": [stats.to_json() for stats in self.endpoints],
            "divergences": [group.to_json() for group in self.divergences],
            "suppressed": [location.to_json() for location in self.suppressed],
            "fidelity": self.fidelity.to_json(),
        }
