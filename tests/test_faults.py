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
        ("[[fault]]\nstatus = 503\nreset = true\n", "#1: gives both status and reset"),
        ("seed = [\n", "not valid TOML"),
    ],
)
def test_bad_rules_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "faults.toml"
    path.write_text(text)
    with pytest.raises(FaultRulesError, match=message):
        load_fault_plan(path)


def test_a_fault_for_a_dependency_no_route_names_is_refused(tmp_path: Path) -> None:
    from replaydiff.recorder.faults import check_dependencies

    path = tmp_path / "faults.toml"
    path.write_text('[[fault]]\ndependency = "inventory"\nstatus = 503\n[[fault]]\ndependency = "invetory"\nreset = true\n')
    plan = load_fault_plan(path)
    check_dependencies(plan.__class__(rules=plan.rules[:1]), ["inventory", "payments"], source=str(path))
    with pytest.raises(FaultRulesError, match=r"#2: dependency 'invetory' names no route; routes: inventory, payments"):
        check_dependencies(plan, ["payments", "inventory"], source=str(path))


def test_the_tap_refuses_a_fault_for_an_unrouted_dependency_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    faults = tmp_path / "faults.toml"
    faults.write_text('[[fault]]\ndependency = "invetory"\nstatus = 503\n')
    done = subprocess.run(
        [Path(sys.executable).parent / "replaydiff", "tap", "--route", "inventory=http://127.0.0.1:9", "-o",
         tmp_path / "u.jsonl.zst", "--faults", faults, "--confdir", tmp_path / "conf"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith("dependency 'invetory' names no route; routes: inventory")
    assert "Traceback" not in done.stderr
