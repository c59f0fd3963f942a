"""Comparing retry and upstream behaviour of two targets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from replaydiff.corpora import Attempt, ReplayRecord, Response, UpstreamCall
from replaydiff.diff.behaviour import compare_behaviour


def _record(statuses: list[int], target: str = "baseline", attempts: int = 1, gap_us: int = 50_000) -> ReplayRecord:
    calls = [UpstreamCall("inventory", "GET", "/stock/1", s, start_us=i * gap_us) for i, s in enumerate(statuses)]
    return ReplayRecord("x", target, "GET /p/{id}", [Attempt(0, 1, 2, 200)] * attempts, Response(200), calls)


calls = st.lists(st.sampled_from([200, 503]), max_size=5)


@given(statuses=calls)
def test_identical_behaviour_never_differs(statuses: list[int]) -> None:
    assert compare_behaviour(_record(statuses), _record(statuses, "candidate")) == []


def test_more_retries_after_a_fault_is_a_retry_divergence_with_both_sequences() -> None:
    difference, calls = compare_behaviour(_record([503, 200]), _record([503, 503, 503, 200], "candidate", gap_us=1000))
    assert (difference.kind, difference.location) == ("retry", "inventory")
    assert (calls.kind, calls.location) == ("upstream", "inventory")
    assert difference.left == "GET /stock/1 → 503, +50 ms GET /stock/1 → 200"
    assert difference.right is not None and difference.right.count("→ 503") == 3 and "+1 ms" in difference.right


def test_a_different_number_of_calls_without_retries_is_an_upstream_divergence() -> None:
    [difference] = compare_behaviour(_record([200]), _record([200, 200], "candidate"))
    assert (difference.kind, difference.location) == ("upstream", "inventory")


def test_upstream_differences_that_follow_from_a_different_status_are_not_repeated() -> None:
    from replaydiff.diff.compare import compare

    failed_early = _record([], "candidate")
    failed_early.response = Response(500)
    assert [d.kind for d in compare(_record([200]), failed_early)] == ["status"]


def test_client_attempts_are_compared() -> None:
    [difference] = compare_behaviour(_record([], attempts=1), _record([], "candidate", attempts=3))
    assert (difference.kind, difference.location) == ("retry", "client attempts")


def test_giving_up_much_sooner_after_the_same_failures_is_a_retry_divergence() -> None:
    patient = _record([503, 503], gap_us=400_000)
    hasty = _record([503, 503], "candidate", gap_us=10_000)
    [difference] = compare_behaviour(patient, hasty)
    assert (difference.kind, difference.location) == ("retry", "inventory time before giving up")
    assert (difference.left, difference.right) == ("400 ms", "10 ms")
    assert compare_behaviour(patient, _record([503, 503], "baseline2", gap_us=390_000)) == []  # jitter is not a change
