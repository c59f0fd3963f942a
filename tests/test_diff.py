"""The differ on real records built in code: compare, noise, latency, analysis and the text report."""

from __future__ import annotations

import copy
import io
import json
import random
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from replaydiff.corpora import Attempt, ReplayRecord, Response
from replaydiff.corpora.model import ErrorKind
from replaydiff.diff import DiffOptions, NoiseThresholds, analyze, render_text
from replaydiff.diff.compare import compare
from replaydiff.diff.excerpt import MAX_CHARS
from replaydiff.diff.latency import LatencyThresholds, assess, percentiles, signed_rank_p
from replaydiff.diff.noise import is_signal
from replaydiff.diff.structure import member
from tests.strategies import responses

ENDPOINT = "GET /items/{id}"


def record(
    target: str = "baseline",
    *,
    exchange: str = "ex1",
    endpoint: str = ENDPOINT,
    status: int = 200,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    ms: float = 5.0,
    error: ErrorKind | None = None,
) -> ReplayRecord:
    """One target's answer; `error` makes it a failed request without a response."""
    response = None if error else Response(status, headers=list(headers), body=body)
    attempt = Attempt(0, None, duration_us=int(ms * 1000), status=None if error else status, error=error)
    return ReplayRecord(exchange, target, endpoint, [attempt], response)


def doc(
    value: Any, target: str = "baseline", *, headers: Sequence[tuple[str, str]] = (), **kwargs: Any
) -> ReplayRecord:
    return record(
        target, body=json.dumps(value).encode(), headers=[("Content-Type", "application/json"), *headers], **kwargs
    )


def found(left: ReplayRecord, right: ReplayRecord) -> list[tuple[str, str, str | None, str | None]]:
    return [(d.kind, d.location, d.left, d.right) for d in compare(left, right)]


# --- compare: outcome and status -------------------------------------------------------------


def test_identical_answers_do_not_differ() -> None:
    assert found(doc({"a": [1, 2]}), doc({"a": [1, 2]})) == []


def test_a_status_difference_is_reported_alone() -> None:
    left = record(status=200, body=b"ok", headers=[("X-A", "1")])
    right = record(status=500, body=b"boom", headers=[("X-A", "2")])
    assert found(left, right) == [("status", "", "200", "500")]


def test_a_failed_side_is_an_error_difference() -> None:
    assert found(record(status=200), record(error="timeout")) == [("error", "", "200", "timeout")]
    assert found(record(error="reset"), record(error="timeout")) == [("error", "", "reset", "timeout")]
    assert found(record(error="timeout"), record(error="timeout")) == []


# --- compare: headers ------------------------------------------------------------------------


def test_headers_compare_by_lower_case_name_without_hop_by_hop_or_derived_ones() -> None:
    left = record(
        headers=[
            ("Content-Type", "application/json"),
            ("Date", "Mon"),
            ("Server", "a"),
            ("Keep-Alive", "5"),
            ("Proxy-Authenticate", "x"),
            ("Connection", "close, X-Hop"),
            ("X-Hop", "1"),
            ("Cache-Control", "no-store"),
        ]
    )
    right = record(
        headers=[
            ("content-type", "application/json"),
            ("date", "Tue"),
            ("server", "b"),
            ("X-Hop", "2"),
            ("Connection", "x-hop"),
            ("X-New", "1"),
        ]
    )
    assert found(left, right) == [("header", "cache-control", "no-store", None), ("header", "x-new", None, "1")]


def test_repeated_headers_compare_in_order() -> None:
    left = record(headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
    right = record(headers=[("Set-Cookie", "b=2"), ("Set-Cookie", "a=1")])
    assert found(left, right) == [("header", "set-cookie", "a=1, b=2", "b=2, a=1")]


# --- compare: bodies -------------------------------------------------------------------------


def test_a_json_type_change_is_found_at_the_generalized_path() -> None:
    left = doc({"items": [{"price": 1.5}, {"price": 2}]})
    right = doc({"items": [{"price": "1.5"}, {"price": "2"}]})
    assert found(left, right) == [("body", "$.items[*].price", "1.5", '"1.5"')]


def test_json_keys_added_removed_and_oddly_named() -> None:
    left = doc({"a": {"x-y": 1, "gone": True}})
    right = doc({"a": {"x-y": 2, "new": None}})
    assert sorted(found(left, right)) == [
        ("body", "$.a.gone", "true", None),
        ("body", "$.a.new", None, "null"),
        ("body", '$.a["x-y"]', "1", "2"),
    ]


def test_json_numbers_compare_as_json_does_but_booleans_are_not_numbers() -> None:
    assert found(doc({"n": 1, "m": [2]}), doc({"m": [2.0], "n": 1.0})) == []
    assert found(doc([1, 0]), doc([True, False])) == [("body", "$[*]", "1", "true")]


def test_json_is_recognized_by_parsing_whatever_the_content_type() -> None:
    left = record(body=b'{"a": 1}', headers=[("Content-Type", "text/plain")])
    right = record(body=b'{"a": 2}', headers=[("Content-Type", "text/plain")])
    assert found(left, right) == [("body", "$.a", "1", "2")]


def test_text_bodies_show_where_they_first_differ() -> None:
    prefix = "x" * 500
    [(kind, location, left, right)] = found(
        record(body=f"{prefix}old tail".encode()), record(body=f"{prefix}new tail".encode())
    )
    assert (kind, location) == ("body", "")
    assert left is not None and right is not None
    assert left.startswith("…") and left.endswith("old tail") and right.endswith("new tail")


def test_binary_bodies_are_summarized_and_long_values_clipped() -> None:
    [(_, _, left, right)] = found(record(body=b"\xff\x00" * 10), record(body=b"\xff\x01" * 10))
    assert left is not None and left.startswith("<20 bytes, sha256 ")
    [(_, _, left, right)] = found(doc({"a": "x" * 1000}), doc({"a": "y" * 1000}))
    assert left is not None and right is not None
    assert len(left) == len(right) == MAX_CHARS


def test_a_json_body_against_a_non_json_one_is_one_body_difference() -> None:
    assert found(record(body=b'{"a": 1}'), record(body=b"<html>")) == [("body", "", '{"a": 1}', "<html>")]


# --- compare: properties ---------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@given(response=responses, error=st.sampled_from([None, "timeout", "reset"]))
def test_a_record_never_differs_from_its_copy(response: Response, error: ErrorKind | None) -> None:
    left = ReplayRecord("ex", "baseline", ENDPOINT, [Attempt(0, None, 1, None, error)], None if error else response)
    assert compare(left, copy.deepcopy(left)) == []


@given(json_values)
def test_a_json_document_never_differs_from_itself_reserialized(value: Any) -> None:
    left = record(body=json.dumps(value).encode())
    right = record(body=json.dumps(value, indent=1).encode())
    assert compare(left, right) == []


path_steps = st.lists(st.one_of(st.text(min_size=1, max_size=6), st.integers(0, 3)), max_size=4)


@given(steps=path_steps, leaf=st.integers() | st.floats(allow_nan=False, allow_infinity=False), filler=json_values)
def test_a_planted_type_change_is_found_at_its_generalized_path(
    steps: list[str | int], leaf: float, filler: Any
) -> None:
    def nest(value: Any) -> Any:
        for step in reversed(steps):
            value = [filler] * step + [value, filler] if isinstance(step, int) else {"sibling": filler, step: value}
        return value

    [difference] = compare(doc(nest(leaf)), doc(nest(str(leaf))))
    path = "$" + "".join("[*]" if isinstance(step, int) else member(step) for step in steps)
    assert (difference.kind, difference.location, difference.right) == ("body", path, json.dumps(str(leaf)))


@given(json_values, json_values)
def test_differences_are_found_at_the_same_places_both_ways(left: Any, right: Any) -> None:
    forward = {d.key for d in compare(doc(left), doc(right))}
    assert forward == {d.key for d in compare(doc(right), doc(left))}


# --- noise -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "noise", "total", "signal"),
    [
        (100, 100, 100, False),  # a timestamp: every call differs
        (10, 12, 100, False),
        (100, 0, 100, True),
        (55, 45, 100, False),  # excess within the relative threshold
        (70, 30, 100, True),
        (40, 0, 100_000, True),
        (1, 0, 10_000, False),  # one difference in ten thousand: below the absolute threshold
        (1, 0, 0, False),
    ],
)
def test_diffys_rule(raw: int, noise: int, total: int, signal: bool) -> None:
    assert is_signal(raw, noise, total, NoiseThresholds()) is signal


def exchange(
    number: int, *, endpoint: str = ENDPOINT, baseline2: Any, candidate: Any, base: Any = None
) -> list[ReplayRecord]:
    exchange_id = f"{endpoint}#{number}"
    return [
        doc({"v": 1} if base is None else base, "baseline", exchange=exchange_id, endpoint=endpoint),
        doc(baseline2, "baseline2", exchange=exchange_id, endpoint=endpoint),
        doc(candidate, "candidate", exchange=exchange_id, endpoint=endpoint),
    ]


@settings(max_examples=40, deadline=None)
@given(flags=st.lists(st.booleans(), min_size=1, max_size=40), shuffle=st.randoms(use_true_random=False))
def test_differences_as_frequent_as_the_baselines_own_are_suppressed(flags: list[bool], shuffle: random.Random) -> None:
    records = [
        r
        for n, noisy in enumerate(flags)
        for r in exchange(
            n, baseline2={"v": 1, "t": n} if noisy else {"v": 1}, candidate={"v": 1, "t": -n} if noisy else {"v": 1}
        )
    ]
    shuffle.shuffle(records)
    report = analyze(records)
    assert report.verdict == "same"
    assert [(s.location, s.raw, s.noise) for s in report.suppressed] == (
        [("$.t", sum(flags), sum(flags))] if any(flags) else []
    )


def test_a_change_on_top_of_noise_is_reported_and_the_noise_suppressed() -> None:
    records = [
        r
        for n in range(50)
        for r in exchange(
            n,
            base={"at": "t0", "price": 1},
            baseline2={"at": f"t{n}", "price": 1},
            candidate={"at": f"t{n}x", "price": "1" if n % 2 else 1},
        )
    ]
    report = analyze(records)
    assert [(g.fingerprint, g.count, g.total) for g in report.divergences] == [(f"{ENDPOINT}|body|$.price", 25, 50)]
    assert [s.location for s in report.suppressed] == ["$.at"]
    assert report.totals.divergent_exchanges == 25
    assert report.endpoints[0].divergent_by_kind == {"body": 25}


def test_without_baseline2_nothing_is_learned_and_every_difference_is_reported() -> None:
    records = [
        r for n in range(5) for r in exchange(n, baseline2=None, candidate={"v": 1, "at": n}) if r.target != "baseline2"
    ]
    report = analyze(records, targets={"baseline": "http://b", "candidate": "http://c"})
    assert not report.noise_learned
    assert [g.location for g in report.divergences] == ["$.at"]


# --- latency ---------------------------------------------------------------------------------


def test_percentiles_interpolate_between_ranks() -> None:
    stats = percentiles([float(n) for n in range(1, 101)])
    assert stats is not None
    assert (stats.count, stats.p50) == (100, 50.5)
    assert (stats.p95, stats.p99) == pytest.approx((95.05, 99.01))
    assert percentiles([]) is None


def test_signed_rank_p_matches_the_textbook_normal_approximation() -> None:
    # n = 20, all positive: W+ = 210, mean 105, variance 717.5 → z = (210 − 105 − 0.5) / √717.5 ≈ 3.901
    assert signed_rank_p([float(n) for n in range(1, 21)]) == pytest.approx(4.79e-5, rel=0.01)
    assert signed_rank_p([1.0, -1.0] * 20) == pytest.approx(0.5, abs=0.05)
    assert signed_rank_p([0.0] * 30) == 1.0


def noisy_pairs(
    rng: random.Random, n: int, *, shift_ms: float, base_ms: float = 5.0
) -> tuple[list[float], list[float], list[float]]:
    """Baseline, baseline2 and candidate on a noisy machine: shared per-moment load, per-target jitter and stalls."""

    def jitter() -> float:
        return rng.expovariate(1 / 2) + (rng.uniform(20, 200) if rng.random() < 0.03 else 0.0)

    loads = [rng.lognormvariate(0, 0.5) * base_ms for _ in range(n)]
    return (
        [load + jitter() for load in loads],
        [load + jitter() for load in loads],
        [load + jitter() + shift_ms for load in loads],
    )


def latency_verdict(
    baseline: list[float],
    baseline2: list[float],
    candidate: list[float],
    thresholds: LatencyThresholds = LatencyThresholds(),
) -> bool:
    stats = percentiles(baseline)
    assert stats is not None
    deltas = [c - b for b, c in zip(baseline, candidate, strict=True)]
    noise = [b2 - b for b, b2 in zip(baseline, baseline2, strict=True)]
    return assess(deltas, noise, stats.p50, thresholds).regression


def test_a_planted_30ms_slowdown_is_flagged() -> None:
    assert latency_verdict(*noisy_pairs(random.Random(7), 300, shift_ms=30))


@pytest.mark.parametrize("seed", range(20))
def test_a_noisy_unchanged_endpoint_is_not_flagged(seed: int) -> None:
    assert not latency_verdict(*noisy_pairs(random.Random(seed), 300, shift_ms=0))


def test_a_regression_must_be_large_enough_and_have_enough_pairs() -> None:
    rng = random.Random(3)
    assert not latency_verdict(*noisy_pairs(rng, 300, shift_ms=4))  # significant, but below 10 ms
    assert not latency_verdict(*noisy_pairs(rng, 300, shift_ms=30, base_ms=400))  # below 20% of a slow endpoint
    assert not latency_verdict(*noisy_pairs(rng, 10, shift_ms=30))  # too few pairs


@given(st.lists(st.floats(min_value=-1000, max_value=0), min_size=20, max_size=60))
def test_a_faster_candidate_is_never_a_regression(deltas: list[float]) -> None:
    assert not assess(deltas, [], 5.0, LatencyThresholds()).regression


# --- analysis and report ---------------------------------------------------------------------


def test_analysis_groups_scattered_records_and_counts_failures_and_missing_ones() -> None:
    records = [r for n in range(30) for r in exchange(n, baseline2={"v": 1}, candidate={"v": 1})]
    records[2] = record("candidate", exchange=records[2].exchange_id, error="timeout")
    random.Random(1).shuffle(records)
    records.append(record("baseline", exchange="orphan"))
    report = analyze(records)
    assert report.totals.to_json() == {
        "exchanges": 31,
        "compared": 30,
        "incomplete": 1,
        "divergent_exchanges": 1,
        "noise_pairs": 30,
        "late": 0,
    }
    assert report.errors == {"candidate": {"timeout": 1}}
    assert [(g.kind, g.count, g.examples[0].divergence.candidate) for g in report.divergences] == [("error", 1, "timeout")]


def planted_report() -> Any:
    rng = random.Random(11)
    records: list[ReplayRecord] = []
    for endpoint, shift in (("GET /fast", 0.0), ("GET /slow", 30.0)):
        baseline, baseline2, candidate = noisy_pairs(rng, 60, shift_ms=shift)
        for n in range(60):
            exchange_id = f"{endpoint}#{n}"
            price = "[9]" if endpoint == "GET /fast" and n % 3 == 0 else 9
            records += [
                doc(
                    {"price": price if target == "candidate" else 9, "at": rng.random()},
                    target,
                    exchange=exchange_id,
                    endpoint=endpoint,
                    headers=[("X-Request-Id", str(rng.random()))],
                    ms=ms[n],
                )
                for target, ms in (("baseline", baseline), ("baseline2", baseline2), ("candidate", candidate))
            ]
    return analyze(
        records,
        options=DiffOptions(),
        targets={"baseline": "http://b", "baseline2": "http://b2", "candidate": "http://c"},
    )


def test_the_report_serializes_to_versioned_json() -> None:
    data = json.loads(json.dumps(planted_report().to_json()))
    assert data["schema"] == "replaydiff-diff/3"
    assert data["verdict"] == "divergent"
    assert [(d["fingerprint"], d["count"], d["total"]) for d in data["divergences"]] == [
        ("GET /fast|body|$.price", 20, 60),
        ("GET /slow|latency|p50", pytest.approx(60, abs=10), 60),
    ]
    assert {(s["kind"], s["location"]) for s in data["suppressed"]} == {("body", "$.at"), ("header", "x-request-id")}
    assert data["endpoints"][1]["paired_latency"]["regression"] is True


def test_the_text_report_leads_with_the_verdict_and_prints_values_verbatim() -> None:
    output = io.StringIO()
    render_text(planted_report(), Console(file=output, width=100))
    text = output.getvalue()
    assert text.startswith("DIVERGENT  2 findings from 2 divergences on 2 of 2 endpoints")
    assert "\x1b[" not in text  # no colour when not writing to a terminal
    assert '"[9]"' in text  # a value that looks like rich markup printed as itself
    assert "`$.price` changed type (number → string) on GET /fast" in text
    assert "latency p50" in text and "on GET /slow" in text
    assert "fingerprint" not in text  # the blocks per divergence are for --verbose
    assert "Suppressed as noise: 2 locations — $.at (body) on 2 endpoints; x-request-id (header) on 2 endpoints" in text
    verbose = io.StringIO()
    render_text(planted_report(), Console(file=verbose, width=100), verbose=True)
    assert "GET /slow  latency  p50" in verbose.getvalue() and "fingerprint GET /fast|body|$.price" in verbose.getvalue()


def test_records_of_one_exchange_need_only_a_small_window_when_adjacent_as_the_replayer_writes_them() -> None:
    records = [r for n in range(50) for r in exchange(n, baseline2={"v": 1}, candidate={"v": 1, "t": n})]
    windowed = analyze(records, max_pending=1)
    assert windowed.totals == analyze(records).totals and windowed.totals.incomplete == 0


def test_an_exchange_pushed_out_of_the_window_is_compared_with_what_it_has() -> None:
    records = [r for n in range(10) for r in exchange(n, baseline2={"v": 1}, candidate={"v": 1})]
    late_candidates = [r for r in records if r.target != "candidate"] + [r for r in records if r.target == "candidate"]
    report = analyze(late_candidates, max_pending=3)
    assert report.totals.exchanges > 10 and report.totals.incomplete > 0  # split, never held without bound


def test_an_overloaded_replayer_is_a_warning() -> None:
    records = [r for n in range(40) for r in exchange(n, baseline2={"v": 1}, candidate={"v": 1})]
    for late in records[:30]:
        late.schedule_lag_us = 80_000
    report = analyze(records)
    assert report.totals.late == 10
    assert any("the machine was overloaded" in line for line in report.warnings())
