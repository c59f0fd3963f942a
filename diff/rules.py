"""User rules: what to ignore or normalize before two answers are compared, per endpoint or everywhere.

One rule type for every place a value can hide (a header, or a JSON path
and everything below it), so a user learns it once:

    [[rule]]
    endpoint = "GET /api/products/{id}"   # glob on the endpoint template; omitted: every endpoint
    path = "$.rating"                     # or: header = "x-cache"; paths: corpora.jsonpath ($..id, $.*_at, [*])
    tolerance = 0.01                      # numbers equal within ±0.01 (relative_tolerance = 0.001: within 0.1%)
    # ignore = true | unordered = true | pattern = "\\d+" with replacement = "N"

Rules apply to both comparisons (baseline–candidate and baseline–baseline2),
so they never distort the noise rule. This module decides; `load_rules`
is its only I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path
from typing import Any

from replaydiff.corpora.endpoints import EndpointPatterns, LearnedEndpoints, template_problem
from replaydiff.corpora.jsonpath import JsonPath, JsonPathError, parse_json_path
from replaydiff.corpora.tomlfile import parse_toml


class RulesError(ValueError):
    """A rules or OpenAPI file the differ cannot use; the message names the file and the bad key."""


@dataclass(frozen=True, slots=True)
class ValueRule:
    """What to do with the values at one location (and below it, for a JSON path)."""

    ignore: bool = False
    pattern: re.Pattern[str] | None = None
    """Applied to string values (header values, JSON strings) before they are compared."""
    replacement: str = ""
    tolerance: float = 0.0
    """Absolute: two numbers closer than this are equal."""
    relative_tolerance: float = 0.0
    """Of the larger magnitude: two numbers within this fraction of each other are equal."""
    unordered: bool = False
    """Arrays compare as multisets: the same items in another order are equal."""

    def merged(self, later: ValueRule) -> ValueRule:
        """Two rules for the same place: the later one's settings win where it sets them."""
        default = ValueRule()
        changes = {f.name: getattr(later, f.name) for f in fields(later) if getattr(later, f.name) != getattr(default, f.name)}
        return replace(self, **changes)

    def normalized(self, text: str) -> str:
        return self.pattern.sub(self.replacement, text) if self.pattern is not None else text

    def numbers_equal(self, left: float, right: float) -> bool:
        if left == right:
            return True
        gap = abs(left - right)
        return gap <= self.tolerance or gap <= self.relative_tolerance * max(abs(left), abs(right))


class PathRules(dict[str, ValueRule]):
    """The rules of one endpoint by JSON path, looked up as the differ walks a document: by the generalized path
    of each node (`$.items[*].price`). Exact paths are the keys; a path with `..` or globs (`$..id`,
    `$.*_at`) is tried on each generalized path the document has (memoized: a few hundred per endpoint), and
    every rule that holds there is merged in file order."""

    def __init__(self, exact: dict[str, ValueRule], ordered: list[tuple[JsonPath, ValueRule]]) -> None:
        super().__init__(exact)
        self._ordered = ordered if any(not path.exact for path, _ in ordered) else []
        self._memo: dict[str, ValueRule | None] = {}

    def __bool__(self) -> bool:
        return bool(self._ordered) or len(self) > 0

    def get(self, path: str, default: ValueRule | None = None) -> ValueRule | None:  # type: ignore[override]
        if not self._ordered:
            return dict.get(self, path, default)
        if path not in self._memo:
            location = [step.name if step.kind == "member" else None for step in parse_json_path(path).steps]
            merged: ValueRule | None = None
            for pattern, rule in self._ordered:
                if pattern.matches(location):
                    merged = merged.merged(rule) if merged is not None else rule
            self._memo[path] = merged
        found = self._memo[path]
        return default if found is None else found


@dataclass(frozen=True, slots=True)
class EndpointRules:
    """The rules in force at one endpoint, by location: lower-case header names and JSON paths."""

    headers: dict[str, ValueRule] = field(default_factory=dict)
    paths: dict[str, ValueRule] = field(default_factory=dict)
    """A `PathRules` when built from a rules file."""

    def __bool__(self) -> bool:
        return bool(self.headers or self.paths)


NO_RULES = EndpointRules()


@dataclass(frozen=True, slots=True)
class _Rule:
    endpoint: str
    """fnmatch glob on the endpoint template (`GET /api/*`, `* /users/{id}`)."""
    header: str | None
    path: JsonPath | None
    action: ValueRule


class Rules:
    """A parsed rules file: value rules, and endpoint patterns that override the default templates."""

    def __init__(self, rules: list[_Rule] | None = None, patterns: EndpointPatterns | None = None) -> None:
        self._rules = rules or []
        self.patterns = patterns or EndpointPatterns()
        self.for_endpoint = lru_cache(maxsize=4096)(self._for_endpoint)

    def __len__(self) -> int:
        return len(self._rules)

    def with_patterns(self, patterns: EndpointPatterns) -> Rules:
        """These rules, with `patterns` added after the rules file's own."""
        return Rules(self._rules, self.patterns + patterns)

    def with_learned(self, learned: LearnedEndpoints) -> Rules:
        """These rules, with endpoint templates learned from the traffic behind the user's patterns."""
        return Rules(self._rules, self.patterns.with_learned(learned))

    def _for_endpoint(self, endpoint: str) -> EndpointRules:
        """Every rule whose glob matches, merged in file order, so a specific rule after a global one refines it."""
        headers: dict[str, ValueRule] = {}
        paths: dict[str, ValueRule] = {}
        ordered: list[tuple[JsonPath, ValueRule]] = []
        for rule in self._rules:
            if not fnmatchcase(endpoint, rule.endpoint):
                continue
            if rule.header is not None:
                key = rule.header.lower()
                headers[key] = headers[key].merged(rule.action) if key in headers else rule.action
                continue
            assert rule.path is not None
            ordered.append((rule.path, rule.action))
            if rule.path.exact:
                key = rule.path.rendered()
                paths[key] = paths[key].merged(rule.action) if key in paths else rule.action
        if not headers and not ordered:
            return NO_RULES
        return EndpointRules(headers, PathRules(paths, ordered))


_RULE_KEYS = frozenset({"endpoint", "header", "path", "ignore", "pattern", "replacement", "tolerance",
                        "relative_tolerance", "unordered"})  # fmt: skip
_TOP_KEYS = frozenset({"rule", "endpoints"})


def load_rules(path: Path) -> Rules:
    return parse_rules(read_text(path, "rules file"), source=str(path))


def read_text(path: Path, what: str) -> str:
    """A user's configuration file, or a `RulesError` saying why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read the {what}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RulesError(f"{path}: the {what} is not UTF-8 text") from None


def parse_rules(text: str, *, source: str = "rules") -> Rules:
    """Every problem is one line naming `source` and the bad key, so a user fixes it without guessing."""
    data = parse_toml(text, source, RulesError)
    if unknown := sorted(data.keys() - _TOP_KEYS):
        raise RulesError(f"{source}: unknown key {unknown[0]!r}; a rules file has `endpoints` and [[rule]] tables")
    patterns = data.get("endpoints", [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) and p.startswith("/") for p in patterns):
        raise RulesError(f"{source}: `endpoints` must be a list of path templates such as \"/users/{{userId}}\"")
    for number, pattern in enumerate(patterns, start=1):
        if problem := template_problem(pattern):
            raise RulesError(f"{source}: endpoints[{number}] {pattern!r}: {problem}")
    tables = data.get("rule", [])
    if not isinstance(tables, list):
        raise RulesError(f"{source}: `rule` must be an array of tables: write [[rule]]")
    rules = [_parse_rule(table, f"{source}: rule {number}") for number, table in enumerate(tables, start=1)]
    return Rules(rules, EndpointPatterns((p, None) for p in patterns))


def _parse_rule(table: Any, where: str) -> _Rule:
    if not isinstance(table, dict):
        raise RulesError(f"{where}: must be a table")
    if unknown := sorted(table.keys() - _RULE_KEYS):
        raise RulesError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_RULE_KEYS))})")
    endpoint = _typed(table, "endpoint", str, where, "*")
    header = _typed(table, "header", str, where, None)
    text = _typed(table, "path", str, where, None)
    if (header is None) == (text is None):
        raise RulesError(f"{where}: give exactly one of `header` or `path`")
    path = None if text is None else _json_path(text, where)
    action = ValueRule(
        ignore=_typed(table, "ignore", bool, where, False),
        pattern=_regex(table, where),
        replacement=_typed(table, "replacement", str, where, ""),
        tolerance=_tolerance(table, "tolerance", where),
        relative_tolerance=_tolerance(table, "relative_tolerance", where),
        unordered=_typed(table, "unordered", bool, where, False),
    )
    if action == ValueRule():
        raise RulesError(f"{where}: no action: set ignore, pattern, tolerance, relative_tolerance or unordered")
    if "replacement" in table and action.pattern is None:
        raise RulesError(f"{where}: `replacement` needs a `pattern`")
    if header is not None and (action.tolerance or action.relative_tolerance or action.unordered):
        raise RulesError(f"{where}: tolerance and unordered apply to JSON paths, not to header {header!r}")
    return _Rule(endpoint, header, path, action)


def _json_path(text: str, where: str) -> JsonPath:
    """The dialect of `corpora.jsonpath`; the differ sees every item of an array alike, so no `[n]`."""
    try:
        path = parse_json_path(text)
    except JsonPathError as exc:
        raise RulesError(f"{where}: `path`: {exc}") from None
    if any(step.kind == "index" for step in path.steps):
        raise RulesError(f"{where}: `path` {text!r}: the differ compares every item of an array alike; write [*]")
    return path


def _typed(table: dict[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    value = table.get(key, default)
    if key in table and not isinstance(value, kind):
        raise RulesError(f"{where}: `{key}` must be a {kind.__name__}, got {value!r}")
    return value


def _regex(table: dict[str, Any], where: str) -> re.Pattern[str] | None:
    source = _typed(table, "pattern", str, where, None)
    if source is None:
        return None
    try:
        return re.compile(source)
    except re.error as exc:
        raise RulesError(f"{where}: `pattern` {source!r} is not a valid regular expression ({exc})") from None


def _tolerance(table: dict[str, Any], key: str, where: str) -> float:
    value = table.get(key, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise RulesError(f"{where}: `{key}` must be a non-negative number, got {value!r}")
    return float(value)
