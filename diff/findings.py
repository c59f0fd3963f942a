"""What a diff found: the `DiffReport` that the text report renders and the JSON report serializes.

Plain data, no decisions: `diff.analysis` fills it in. The JSON form is
versioned (`schema`) because CI jobs and dashboards parse it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from corpora import Divergence
from corpora.model import DivergenceKind
from diff.latency import LatencyThresholds, PairedLatency, Percentiles
from diff.noise import NoiseThresholds

SCHEMA = "replaydiff-diff/1"


@dataclass(frozen=True)
class DiffOptions:
    noise: NoiseThresholds = NoiseThresholds()
    latency: LatencyThresholds = LatencyThresholds()
    max_examples: int = 3
    """Examples kept per divergence: enough to see a pattern, few enough to keep memory flat."""

    def __post_init__(self) -> None:
        if self.max_examples < 1:
            raise ValueError(f"max_examples={self.max_examples} must be at least 1")

    def to_json(self) -> dict[str, Any]:
        return {
            "relative_noise": self.noise.relative,
            "absolute_noise": self.noise.absolute,
            "latency_abs_ms": self.latency.absolute_ms,
            "latency_rel": self.latency.relative,
            "latency_min_pairs": self.latency.min_pairs,
            "latency_alpha": self.latency.alpha,
        }


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
    examples: list[Divergence]
    """At least one."""
    detail: str = ""

    @property
    def fingerprint(self) -> str:
        return self.examples[0].fingerprint

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


@dataclass(frozen=True, slots=True)
class SuppressedLocation:
    """A place where baseline and candidate differed no more than baseline differed from itself."""

    endpoint: str
    kind: DivergenceKind
    location: str
    raw: int
    noise: int

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "kind": self.kind,
            "location": self.location,
            "raw": self.raw,
            "noise": self.noise,
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

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "exchanges": self.exchanges,
            "divergent_by_kind": self.divergent_by_kind,
            "latency_ms": {target: stats.to_json() for target, stats in self.latency.items()},
            "paired_latency": self.paired.to_json(),
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

    def to_json(self) -> dict[str, int]:
        return {
            "exchanges": self.exchanges,
            "compared": self.compared,
            "incomplete": self.incomplete,
            "divergent_exchanges": self.divergent_exchanges,
            "noise_pairs": self.noise_pairs,
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

    @property
    def noise_learned(self) -> bool:
        return self.totals.noise_pairs > 0

    @property
    def verdict(self) -> Literal["same", "divergent"]:
        return "divergent" if self.divergences else "same"

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "verdict": self.verdict,
            "targets": self.targets,
            "options": self.options.to_json(),
            "noise_learned": self.noise_learned,
            "totals": self.totals.to_json(),
            "errors": self.errors,
            "endpoints": [stats.to_json() for stats in self.endpoints],
            "divergences": [group.to_json() for group in self.divergences],
            "suppressed": [location.to_json() for location in self.suppressed],
        }
