"""Seeded fault decisions: pure, repeatable, and as frequent as asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replaydiff.recorder.faults import FaultPlan, FaultRule, FaultRulesError, load_fault_plan

keys = st.text(alphabet="0123456789abcdef", min_size=24, max_size=24)


@given(seed=st.integers(), key=keys, ordinal=st.integers(0, 10))
def test_the_same_inputs_always_decide_the_same(seed: int, key: str, ordinal: int) -> None:
    plan = FaultPlan(seed=seed, rules=(FaultRule(dependency="inv*", status=503, fraction=0.5),
                                       FaultRule(delay_ms=20, fraction=0.5)))
    first = plan.decide(key, "inventory", "GET", "/stock/1", ordinal)
    assert first == FaultPlan(seed=seed, rules=plan.rules).decide(key, "inventory", "GET", "/stock/1", ordinal)


def test_fraction_is_honoured_and_rules_match_by_glob() -> None:
    plan = FaultPlan(seed=3, rules=(FaultRule(dependency="inventory", path="/stock/*", status=503, fraction=0.2),))
    fired = sum(plan.decide(f"{i:024x}", "inventory", "GET", "/stock/9", 0) is not None for i in range(5000))
    assert 900 <= fired <= 1100
    assert plan.decide("0" * 24, "payments", "GET", "/stock/9", 0) is None


def test_seeds_decide_differently() -> None:
    rule = (FaultRule(reset=True, fraction=0.5),)
    a = [FaultPlan(1, rule).decide(f"{i:024x}", "d", "GET", "/", 0) for i in range(200)]
    b = [FaultPlan(2, rule).decide(f"{i:024x}", "d", "GET", "/", 0) for i in range(200)]
    assert a != b


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[fault]]\nstatus = 503\nfracton = 0.1\n", "unknown key 'fracton'"),
        ("[[fault]]\nfraction = 0.1\n", "says nothing to do"),
        ("[[fault]]\nstatus = 999\n", "not an HTTP status"),
        ("seed = [\n", "not valid TOML"),
    ],
)
def test_bad_rules_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "faults.toml"
    path.write_text(text)
    with pytest.raises(FaultRulesError, match=message):
        load_fault_plan(path)
