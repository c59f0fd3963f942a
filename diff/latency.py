"""Latency per endpoint: percentiles per target, and paired tests for a candidate regression.

Pure functions over milliseconds. The replayer sends each request to every
target at the same moment, so `candidate − baseline` for one exchange
cancels most of the machine's noise (a GC pause, a busy core) that two
unpaired distributions would carry. A regression must be large (absolute
and relative floors), larger than the A/A difference `baseline2 − baseline`,
and significant; on a noisy two-core machine any one of these alone flags
endpoints that did not change.

Two tests, because a change can move the whole distribution or only its
tail: the median shift (one-sided Wilcoxon signed-rank test on the paired
differences), and the tail (`assess_tail`: how often the candidate, rather
than baseline2, exceeds the baseline's own p99 on the same request).
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Iterator, Sequence
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
    tail_quantile: float = 0.99
    """The tail a regression can hide in while the median stays put."""
    tail_min_pairs: int = 100
    """Below this a p99 is one or two samples: nothing to test."""

    def __post_init__(self) -> None:
        if not 0.5 < self.tail_quantile < 1:
            raise ValueError(f"latency tail_quantile={self.tail_quantile} must be between 0.5 and 1")
        if self.absolute_ms < 0 or self.relative < 0:
            raise ValueError(f"latency thresholds must not be negative: {self.absolute_ms} ms, {self.relative}")
        if self.min_pairs < 1 or self.tail_min_pairs < 1:
            raise ValueError(f"latency min_pairs={self.min_pairs}, tail_min_pairs={self.tail_min_pairs} must be ≥ 1")
        if not 0 < self.alpha < 1:
            raise ValueError(f"latency alpha={self.alpha} must be between 0 and 1")


@dataclass(frozen=True, slots=True)
class PairedLatency:
    """The paired comparison of one endpoint; the medians are `None` when there was nothing to pair."""

    pairs: int
    slower: int
    """Pairs where the candidate took longer."""
    median_delta_ms: float | None
    median_noise_ms: float | None
    p_value: float | None
    regression: bool

    def to_json(self) -> dict[str, object]:
        return {
            "pairs": self.pairs,
            "slower": self.slower,
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
        return PairedLatency(0, 0, None, median_noise, None, False)
    median_delta = median(deltas_ms)
    p_value = signed_rank_p(deltas_ms)
    regression = (
        len(deltas_ms) >= thresholds.min_pairs
        and median_delta >= max(thresholds.absolute_ms, thresholds.relative * baseline_p50_ms)
        and median_delta - abs(median_noise or 0.0) >= thresholds.absolute_ms
        and p_value < thresholds.alpha
    )
    slower = sum(1 for delta in deltas_ms if delta > 0)
    return PairedLatency(len(deltas_ms), slower, median_delta, median_noise, p_value, regression)


def quantile(samples_ms: Sequence[float], q: float) -> float:
    return _quantile(sorted(samples_ms), q)


def exceedance_p(treated_only: int, control_only: int) -> float:
    """One-sided exact sign test (McNemar) on discordant pairs: P(at least `treated_only` of them by chance).

    Under no change, a request on which exactly one of candidate and
    baseline2 exceeds the threshold is as likely to be the candidate's as
    baseline2's. Pairs where both exceed it (the machine stalled for every
    target at once) say nothing and are not counted.
    """
    n = treated_only + control_only
    if n == 0 or treated_only <= control_only:
        return 1.0
    if n > 1000:  # the exact sum is slow and the normal approximation exact enough
        z = (treated_only - n / 2 - 0.5) / math.sqrt(n / 4)
        return 0.5 * math.erfc(z / math.sqrt(2))
    return sum(math.comb(n, k) for k in range(treated_only, n + 1)) / 2**n


@dataclass(frozen=True, slots=True)
class TailLatency:
    """The tail comparison of one endpoint at `quantile` (p99 by default)."""

    quantile: float
    baseline_ms: float
    """The baseline's own quantile, and the threshold: what counts as a slow answer on this endpoint."""
    candidate_ms: float
    control_ms: float
    """baseline2's quantile (the baseline's without baseline2): the tail's A/A noise."""
    candidate_only: int
    """Requests where only the candidate exceeded the threshold."""
    control_only: int
    excess_ms: float
    """Median of candidate − control over the requests only the candidate made slow: the size of the change."""
    p_value: float
    regression: bool

    @property
    def label(self) -> str:
        return f"p{self.quantile * 100:g}"

    def to_json(self) -> dict[str, object]:
        return {
            "quantile": self.quantile,
            "baseline_ms": round(self.baseline_ms, 3),
            "candidate_ms": round(self.candidate_ms, 3),
            "control_ms": round(self.control_ms, 3),
            "candidate_only": self.candidate_only,
            "control_only": self.control_only,
            "excess_ms": round(self.excess_ms, 3),
            "p_value": self.p_value,
            "regression": self.regression,
        }


def assess_tail(samples: Sequence[tuple[float, float, float]], thresholds: LatencyThresholds) -> TailLatency | None:
    """Per request (baseline, control, candidate) ms; control is baseline2 (or the baseline again without one).

    The threshold is the baseline's own quantile, from a sample independent
    of both candidate and control. Significant: `exceedance_p` below alpha.
    Large: on the requests only the candidate made slow, it took at least
    the absolute and relative floors longer than the control did; the
    quantiles themselves are too jumpy to measure that (one stall moves a p99).
    `None` below `tail_min_pairs`.
    """
    if len(samples) < thresholds.tail_min_pairs:
        return None
    baseline_ms, control_ms, candidate_ms = ([sample[i] for sample in samples] for i in range(3))
    q = thresholds.tail_quantile
    threshold = quantile(baseline_ms, q)
    excess: list[float] = []
    control_only = 0
    for control, candidate in zip(control_ms, candidate_ms, strict=True):
        if candidate > threshold >= control:
            excess.append(candidate - control)
        elif control > threshold >= candidate:
            control_only += 1
    p_value = exceedance_p(len(excess), control_only)
    excess_ms = median(excess) if excess else 0.0
    regression = (
        excess_ms >= max(thresholds.absolute_ms, thresholds.relative * threshold) and p_value < thresholds.alpha
    )
    return TailLatency(
        q, threshold, quantile(candidate_ms, q), quantile(control_ms, q), len(excess), control_only, excess_ms,
        p_value, regression,
    )  # fmt: skip


Sample = tuple[float | None, float | None, float | None]
"""One exchange's latencies in ms: (baseline, baseline2, candidate), `None` where that target gave no answer."""


class Reservoir:
    """A uniform sample of at most `capacity` exchanges' latencies (Vitter's algorithm R, seeded).

    Keeps a diff's memory independent of the results file's size while
    keeping each exchange's latencies together, so the sample stays paired.
    """

    def __init__(self, capacity: int = 50_000, *, seed: int = 0) -> None:
        self.capacity = capacity
        self.seen = 0
        self.samples: list[Sample] = []
        self._rng = random.Random(seed)

    def add(self, sample: Sample) -> None:
        self.seen += 1
        if len(self.samples) < self.capacity:
            self.samples.append(sample)
        elif (slot := self._rng.randrange(self.seen)) < self.capacity:
            self.samples[slot] = sample

    def column(self, index: int) -> list[float]:
        """One target's answered latencies."""
        return [value for sample in self.samples if (value := sample[index]) is not None]

    def paired(self, first: int, second: int) -> Iterator[tuple[float, float]]:
        for sample in self.samples:
            if (a := sample[first]) is not None and (b := sample[second]) is not None:
                yield a, b


def log_edges(samples_ms: Sequence[float], bins: int = 30) -> list[float]:
    """Bin edges spaced evenly on a log scale over the samples: latency tails span orders of magnitude."""
    low, high = max(min(samples_ms), 0.01), max(max(samples_ms), 0.02)
    if high <= low:
        high = low * 2
    ratio = (high / low) ** (1 / bins)
    return [round(low * ratio**step, 4) for step in range(bins + 1)]


def histogram(samples_ms: Sequence[float], edges: Sequence[float]) -> list[int]:
    """Counts per bin between consecutive `edges`; values outside go to the first or last bin."""
    counts = [0] * (len(edges) - 1)
    last = len(counts) - 1
    for value in samples_ms:
        counts[min(max(bisect.bisect_right(edges, value) - 1, 0), last)] += 1
    return counts
