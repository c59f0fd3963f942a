"""The tail test and the bounded latency sample, on a simulated noisy two-core machine."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replaydiff.diff import analyze
from replaydiff.diff.latency import LatencyThresholds, Reservoir, assess_tail, exceedance_p
from tests.test_diff import doc, noisy_pairs

Triples = list[tuple[float, float, float]]


def with_stalls(rng: random.Random, n: int, *, share: float, stall_ms: float = 250.0, base_ms: float = 5.0) -> Triples:
    """Baseline, baseline2, candidate per request; the candidate alone stalls on `share` of its requests.

    The simulated machine itself stalls each target on 3% of requests by up to
    200 ms, so its p99 is such a stall: a planted stall is visible in the tail
    only when it is longer (a shorter one is indistinguishable, by any test).
    """
    baseline, baseline2, candidate = noisy_pairs(rng, n, shift_ms=0.0, base_ms=base_ms)
    return [
        (b, b2, c + (stall_ms if rng.random() < share else 0.0))
        for b, b2, c in zip(baseline, baseline2, candidate, strict=True)
    ]


def test_exceedance_p_is_the_exact_one_sided_sign_test() -> None:
    assert exceedance_p(10, 0) == pytest.approx(2**-10)
    assert exceedance_p(15, 2) == pytest.approx(sum(math.comb(17, k) for k in range(15, 18)) / 2**17)
    assert exceedance_p(3, 3) == exceedance_p(0, 0) == exceedance_p(1, 5) == 1.0
    assert exceedance_p(1200, 900) < 1e-9  # the normal approximation for large counts


def test_a_stall_on_four_percent_of_requests_is_found_at_p99_only() -> None:
    tail = assess_tail(with_stalls(random.Random(5), 1000, share=0.04), LatencyThresholds())
    assert tail is not None and tail.regression
    assert tail.excess_ms > 200 and tail.candidate_only > 3 * tail.control_only


@pytest.mark.parametrize("seed", range(30))
def test_an_unchanged_tail_is_never_flagged(seed: int) -> None:
    tail = assess_tail(with_stalls(random.Random(seed), 430, share=0.0), LatencyThresholds())
    assert tail is not None and not tail.regression


def test_the_tail_needs_enough_requests_and_a_large_enough_growth() -> None:
    rng = random.Random(9)
    assert assess_tail(with_stalls(rng, 99, share=0.04), LatencyThresholds()) is None
    slight = assess_tail(with_stalls(rng, 430, share=0.04, stall_ms=4.0), LatencyThresholds())
    assert slight is not None and not slight.regression


def endpoint_records(samples: Triples, endpoint: str = "GET /list") -> list:
    return [
        doc({"ok": True}, target, exchange=f"{endpoint}#{n}", endpoint=endpoint, ms=ms)
        for n, triple in enumerate(samples)
        for target, ms in zip(("baseline", "baseline2", "candidate"), triple, strict=True)
    ]


def test_a_tail_regression_is_one_latency_divergence_and_a_median_shift_is_not_also_a_tail_one() -> None:
    rng = random.Random(2)
    shifted = [(b, b2, c + 30.0) for b, b2, c in with_stalls(rng, 300, share=0.0)]
    report = analyze(endpoint_records(with_stalls(rng, 1000, share=0.04)) + endpoint_records(shifted, "GET /search"))
    assert [g.fingerprint for g in report.divergences] == ["GET /list|latency|p99", "GET /search|latency|p50"]
    listing = report.endpoints[0]
    assert listing.tail is not None and listing.tail.regression and not listing.paired.regression


@given(st.lists(st.integers(0, 10**6), max_size=300), st.integers(1, 50))
def test_the_reservoir_is_bounded_uniform_in_size_and_keeps_samples_whole(values: list[int], capacity: int) -> None:
    reservoir = Reservoir(capacity, seed=1)
    for value in values:
        reservoir.add((float(value), None, float(value) + 0.5))
    assert len(reservoir.samples) == min(capacity, len(values)) and reservoir.seen == len(values)
    assert all(c == b + 0.5 for b, c in reservoir.paired(0, 2))  # the pairs stay pairs
    assert reservoir.column(1) == []
