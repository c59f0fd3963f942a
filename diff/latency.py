"""Latency per endpoint: percentiles per target, and a paired test for a candidate regression.

Pure functions over milliseconds. The replayer sends each request to every
target at the same moment, so `candidate − baseline` for one exchange
cancels most of the machine's noise (a GC pause, a busy core) that two
unpaired distributions would carry. A regression must be large (absolute
and relative floors), larger than the A/A difference `baseline2 − baseline`,
and significant (one-sided Wilcoxon signed-rank test); on a noisy two-core
machine any one of these alone flags endpoints that did not change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median


@dataclass(frozen=True, slots=True)
class Percentiles:
    count: int
    p50: float
    p95: float
    p99: float

    def to_json(self) -> dict[str, float]:
        return {"count": self.count, "p50": round(self.p50, 3), "p95": round(self.p95, 3), "p99": round(self.p99, 3)}


def percentiles(samples_ms: Sequence[float]) -> Percentiles | None:
    if not samples_ms:
        return None
    ordered = sorted(samples_ms)
    return Percentiles(len(ordered), _quantile(ordered, 0.50), _quantile(ordered, 0.95), _quantile(ordered, 0.99))


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks, as numpy's default, so small samples give smooth values."""
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def signed_rank_p(differences: Sequence[float]) -> float:
    """One-sided p-value that paired differences are centred above zero (Wilcoxon signed-rank, normal approximation).

    Zero differences are dropped (Wilcoxon's convention); tied magnitudes
    share their average rank and shrink the variance accordingly. With the
    ≥ 20 pairs we require, the normal approximation is accurate.
    """
    nonzero = sorted((d for d in differences if d != 0), key=abs)
    n = len(nonzero)
    if n == 0:
        return 1.0
    positive_rank_sum = 0.0
    tie_correction = 0.0
    start = 0
    while start < n:
        end = start
        while end + 1 < n and abs(nonzero[end + 1]) == abs(nonzero[start]):
            end += 1
        ties = end - start + 1
        average_rank = (start + end) / 2 + 1
        positive_rank_sum += average_rank * sum(1 for d in nonzero[start : end + 1] if d > 0)
        tie_correction += ties**3 - ties
        start = end + 1
    mean = n * (n + 1) / 4
    variance = n * (n + 1) * (2 * n + 1) / 24 - tie_correction / 48
    z = (positive_rank_sum - mean - 0.5) / math.sqrt(variance)  # 0.5: continuity correction
    return 0.5 * math.erfc(z / math.sqrt(2))


@dataclass(frozen=True)
class LatencyThresholds:
    absolute_ms: float = 10.0
    relative: float = 0.20
    """Of the baseline p50: +10 ms matters on a 5 ms endpoint, not on a 2 s one."""
    min_pairs: int = 20
    alpha: float = 0.001
    """Strict, because every endpoint is tested on every run: a lax level would flag some endpoint by chance."""

    def __post_init__(self) -> None:
        if self.absolute_ms < 0 or self.relative < 0:
            raise ValueError(f"latency thresholds must not be negative: {self.absolute_ms} ms, {self.relative}")
        if self.min_pairs < 1:
            raise ValueError(f"latency min_pairs={self.min_pairs} must be at least 1")
        if not 0 < self.alpha < 1:
            raise ValueError(f"latency alpha={self.alpha} must be between 0 and 1")


@dataclass(frozen=True, slots=True)
class PairedLatency:
    """The paired comparison of one endpoint; the medians are `None` when there was nothing to pair."""

    pairs: int
    median_delta_ms: float | None
    median_noise_ms: float | None
    p_value: float | None
    regression: bool

    def to_json(self) -> dict[str, object]:
        return {
            "pairs": self.pairs,
            "median_delta_ms": _rounded(self.median_delta_ms),
            "median_noise_ms": _rounded(self.median_noise_ms),
            "p_value": self.p_value,
            "regression": self.regression,
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def assess(
    deltas_ms: Sequence[float],
    noise_ms: Sequence[float],
    baseline_p50_ms: float,
    thresholds: LatencyThresholds,
) -> PairedLatency:
    """`deltas_ms`: candidate − baseline per exchange; `noise_ms`: baseline2 − baseline (empty without baseline2)."""
    median_noise = median(noise_ms) if noise_ms else None
    if not deltas_ms:
        return PairedLatency(0, None, median_noise, None, False)
    median_delta = median(deltas_ms)
    p_value = signed_rank_p(deltas_ms)
    regression = (
        len(deltas_ms) >= thresholds.min_pairs
        and median_delta >= max(thresholds.absolute_ms, thresholds.relative * baseline_p50_ms)
        and median_delta - abs(median_noise or 0.0) >= thresholds.absolute_ms
        and p_value < thresholds.alpha
    )
    return PairedLatency(len(deltas_ms), median_delta, median_noise, p_value, regression)
