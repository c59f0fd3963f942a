"""Where two parsed JSON documents differ, with the user's rules applied on the way down.

One walker visits every value once, applying one rule type at every place
(ignore, string replacement, numeric tolerance, order-insensitive arrays),
instead of normalizing documents first and comparing them after: a rule
needs both sides at once (a tolerance compares two numbers). It replaced
deepdiff on the hot path because deepdiff builds an object per visited node
(milliseconds for a listing), and nearly every replayed pair differs
somewhere; deepdiff stays the reference the tests and the benchmark check
this walker against.

JSON semantics, not Python's: `1` and `1.0` are equal, `true` and `1` are
not, and an array is compared position by position unless a rule says
otherwise. An array whose items are the same but in another order is one
difference at the array itself, not one per field of every moved item.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from replaydiff.diff.excerpt import json_value
from replaydiff.diff.rules import ValueRule

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class _Absent:
    """The side of an added or removed member that has nothing there."""


ABSENT: Any = _Absent()


@dataclass(frozen=True, slots=True)
class Change:
    """A generalized path and the two values as short JSON text, `None` for absent."""

    path: str
    left: str | None
    right: str | None


def json_changes(left: Any, right: Any, rules: Mapping[str, ValueRule]) -> list[Change]:
    """Every place `left` and `right` differ, once per location (its first occurrence), parents first."""
    found: dict[str, Change] = {}
    _walk(left, right, "$", rules, None, found)
    return list(found.values())


def _found(found: dict[str, Change], path: str, left: Any, right: Any) -> None:
    """Values are shown only for a location's first occurrence: twelve changed prices serialize once."""
    if path not in found:
        found[path] = Change(path, _shown(left), _shown(right))


def _walk(
    left: Any, right: Any, path: str, rules: Mapping[str, ValueRule], rule: ValueRule | None, found: dict[str, Change]
) -> None:
    """Fills `found` rather than yielding: nested generators cost more than the comparisons themselves."""
    if rules:
        rule = rules.get(path, rule)  # a rule holds for everything below its path, until a deeper one
        if rule is not None and rule.ignore:
            return
    kind = _kind(left)
    if kind is not _kind(right):
        _found(found, path, left, right)
    elif kind is dict:
        _walk_object(left, right, path, rules, rule, found)
    elif kind is list:
        _walk_array(left, right, path, rules, rule, found)
    elif not _scalars_equal(left, right, rule):
        _found(found, path, left, right)


def _walk_object(
    left: dict[str, Any],
    right: dict[str, Any],
    path: str,
    rules: Mapping[str, ValueRule],
    rule: ValueRule | None,
    found: dict[str, Change],
) -> None:
    for key, value in left.items():
        other = right.get(key, ABSENT)
        if type(value) is type(other) and type(value) in _SCALARS and value == other:
            continue  # the common case, decided without a call: equal scalars of one JSON type
        _walk(value, other, path + member(key), rules, rule, found)
    if right.keys() != left.keys():
        for key, value in right.items():
            if key not in left:
                _walk(ABSENT, value, path + member(key), rules, rule, found)


def _walk_array(
    left: list[Any], right: list[Any], path: str, rules: Mapping[str, ValueRule], rule: ValueRule | None,
    found: dict[str, Change],
) -> None:  # fmt: skip
    if rule is not None and rule.unordered:
        left, right = sorted(left, key=canonical), sorted(right, key=canonical)
    item = path + "[*]"
    before = len(found)
    for position in range(max(len(left), len(right))):
        _walk(_at(left, position), _at(right, position), item, rules, rule, found)
    if len(found) > before and _reordered(left, right):
        for added in list(found)[before:]:
            del found[added]
        _found(found, path, left, right)  # one change, at the array


def _reordered(left: list[Any], right: list[Any]) -> bool:
    """The same items in another order; Python's `in` (C speed) rules most lists out before any serializing."""
    if len(left) != len(right) or not all(item in right for item in left):
        return False
    return sorted(map(canonical, left)) == sorted(map(canonical, right))


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _at(items: list[Any], position: int) -> Any:
    return items[position] if position < len(items) else ABSENT


def _kind(value: Any) -> type:
    """JSON's types: bool is not a number, and int and float are one number type."""
    kind = type(value)
    return float if kind is int else kind


def _scalars_equal(left: Any, right: Any, rule: ValueRule | None) -> bool:
    if left == right or (left != left and right != right):  # NaN, which some JSON encoders emit, equals itself
        return True
    if rule is None:
        return False
    if isinstance(left, str):
        return rule.normalized(left) == rule.normalized(right)
    return isinstance(left, float | int) and not isinstance(left, bool) and rule.numbers_equal(left, right)


def _shown(value: Any) -> str | None:
    return None if value is ABSENT else json_value(value)


@lru_cache(maxsize=8192)
def member(key: str) -> str:
    """`.price`, or `["content-type"]` for a key that is not an identifier."""
    return f".{key}" if _IDENTIFIER.match(key) else f"[{json.dumps(key, ensure_ascii=False)}]"


def canonical(value: Any) -> str:
    """Equal JSON values, equal text: the sort key of order-insensitive arrays and the equality of whole documents."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
