"""Seeded fault rules for the tap: which upstream call fails, and how.

A decision is a pure function of (seed, exchange key, dependency, call
ordinal, rule) — never of wall time or arrival order — so the baseline and the
candidate face exactly the same faults for the same replayed request, and a
rerun with the same seed faces them again.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from replaydiff.corpora.tomlfile import read_toml

FaultKind = Literal["status", "delay", "reset"]


class FaultRulesError(Exception):
    """A faults file that cannot be used; the message names the file and the rule."""


@dataclass(frozen=True, slots=True)
class FaultRule:
    dependency: str = "*"
    method: str = "*"
    path: str = "*"
    fraction: float = 1.0
    status: int | None = None
    delay_ms: int = 0
    reset: bool = False

    def applies(self, dependency: str, method: str, path: str) -> bool:
        return (
            fnmatch.fnmatchcase(dependency, self.dependency)
            and fnmatch.fnmatchcase(method.upper(), self.method.upper())
            and fnmatch.fnmatchcase(path, self.path)
        )


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to one call: wait `delay_ms`, then answer `status` or reset (or pass through)."""

    delay_ms: int = 0
    status: int | None = None
    reset: bool = False

    def describe(self) -> str:
        parts = [f"delay {self.delay_ms} ms"] if self.delay_ms else []
        if self.status:
            parts.append(f"status {self.status}")
        if self.reset:
            parts.append("reset")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class FaultPlan:
    seed: int = 0
    rules: tuple[FaultRule, ...] = ()

    def decide(self, exchange_key: str, dependency: str, method: str, path: str, ordinal: int) -> Fault | None:
        """Delays add up; the first matching status or reset rule that fires wins."""
        delay_ms = 0
        for index, rule in enumerate(self.rules):
            if not rule.applies(dependency, method, path):
                continue
            if _draw(self.seed, exchange_key, dependency, ordinal, index) >= rule.fraction:
                continue
            delay_ms += rule.delay_ms
            if rule.status is not None or rule.reset:
                return Fault(delay_ms=delay_ms, status=rule.status, reset=rule.reset)
        return Fault(delay_ms=delay_ms) if delay_ms else None


def _draw(seed: int, exchange_key: str, dependency: str, ordinal: int, rule: int) -> float:
    digest = hashlib.sha256(f"{seed}\0{exchange_key}\0{dependency}\0{ordinal}\0{rule}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


_RULE_KEYS = {"dependency", "method", "path", "fraction", "status", "delay_ms", "reset"}


def load_fault_plan(path: Path, *, seed: int | None = None) -> FaultPlan:
    """`seed` from the command line overrides the file's."""
    data = read_toml(path, FaultRulesError)
    rules = tuple(_rule(path, number, raw) for number, raw in enumerate(data.get("fault", []), start=1))
    file_seed = data.get("seed", 0)
    if not isinstance(file_seed, int):
        raise FaultRulesError(f"{path}: seed must be an integer")
    return FaultPlan(seed=file_seed if seed is None else seed, rules=rules)


def _rule(path: Path, number: int, raw: Any) -> FaultRule:
    where = f"{path}: [[fault]] #{number}"
    if not isinstance(raw, dict):
        raise FaultRulesError(f"{where} must be a table")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise FaultRulesError(f"{where}: unknown key {sorted(unknown)[0]!r}; known: {', '.join(sorted(_RULE_KEYS))}")
    try:
        rule = FaultRule(**raw)
    except TypeError as exc:
        raise FaultRulesError(f"{where}: {exc}") from None
    if not 0 <= rule.fraction <= 1:
        raise FaultRulesError(f"{where}: fraction must be between 0 and 1")
    if rule.status is None and not rule.reset and not rule.delay_ms:
        raise FaultRulesError(f"{where}: says nothing to do; give status, delay_ms or reset")
    if rule.status is not None and not 100 <= rule.status <= 599:
        raise FaultRulesError(f"{where}: status {rule.status} is not an HTTP status")
    if rule.status is not None and rule.reset:
        raise FaultRulesError(
            f"{where}: gives both status and reset; a call is either answered or reset, use two rules"
        )
    return rule


def check_dependencies(plan: FaultPlan, dependencies: Iterable[str], *, source: str) -> None:
    """Every rule's `dependency` must match some routed dependency: a typo would otherwise inject nothing,
    silently. Not checked in forward mode, where dependencies are hosts only known when called."""
    names = sorted(dependencies)
    for number, rule in enumerate(plan.rules, start=1):
        if not any(fnmatch.fnmatchcase(name, rule.dependency) for name in names):
            raise FaultRulesError(
                f"{source}: [[fault]] #{number}: dependency {rule.dependency!r} names no route; "
                f"routes: {', '.join(names)}"
            )
