"""Stateful sessions: carry the values a target returned into the session's later requests.

A recorded session creates an order (`POST` answers id `A`) and then reads it
(`GET /orders/A`). Replayed, the target answers a new id `B`, and the recorded
`GET /orders/A` would miss. The mapping is learned from the corpus itself, with
no configuration: a value in a recorded response is compared with the value
at the same place in each target's live response; where they differ, later
requests of the session have the recorded value replaced by that target's
value. Values that are equal need no mapping, so only the dynamic ones (ids,
tokens, cookies) are ever rewritten.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from replaydiff.corpora import Exchange, Headers, Request, Response
from replaydiff.corpora.jsonpath import JsonPathError, parse_json_path
from replaydiff.corpora.tomlfile import read_toml

Scalar = str | int
Location = tuple[str | int, ...]
"""("json", "items", 0, "id"), ("location", 3) for a path segment of Location, ("cookie", name)."""

_MIN_HEADER_TEXT = 8


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_TOKEN = re.compile(r"^(?=.*\d)[A-Za-z0-9._~+/=:-]{12,512}$")


def _id_like(value: object) -> bool:
    """Numbers, UUIDs, and long tokens with a digit: what servers hand out as ids, sessions and tokens.

    Short words (a coupon code in a volatile promo field) are left alone: rewriting
    them would change what a later request asks for.
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) >= 10
    return isinstance(value, str) and bool(_UUID.match(value) or _TOKEN.match(value) or value.isdigit())


def _json(body: bytes) -> Any:
    if not body or body[:1] not in b"{[":
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def _leaves(document: Any, prefix: Location = ("json",)) -> Iterator[tuple[Location, Any]]:
    if isinstance(document, dict):
        for key, value in document.items():
            yield from _leaves(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from _leaves(value, (*prefix, index))
    else:
        yield prefix, document


@dataclass(frozen=True, slots=True)
class CarryRules:
    """Places whose values are carried forward even when they do not look like ids (a short code, a word).

    From a TOML file: `[[carry]]` tables with `json = "$.session.code"` (`[*]` for any index) or
    `header = "X-Session"`.
    """

    json_paths: tuple[tuple[str | int, ...], ...] = ()
    headers: frozenset[str] = frozenset()

    def forces(self, location: Location) -> bool:
        return any(_path_matches(pattern, location[1:]) for pattern in self.json_paths)


def _path_matches(pattern: tuple[str | int, ...], steps: tuple[str | int, ...]) -> bool:
    return len(pattern) == len(steps) and all(p == "*" and isinstance(s, int) or p == s for p, s in zip(pattern, steps))


class CarryRulesError(Exception):
    """A correlation rules file that cannot be used; the message names the file and the rule."""


def load_carry_rules(path: Path) -> CarryRules:
    data = read_toml(path, CarryRulesError)
    paths: list[tuple[str | int, ...]] = []
    headers: set[str] = set()
    for number, rule in enumerate(data.get("carry", []), start=1):
        if not isinstance(rule, dict) or set(rule) - {"json", "header"} or len(rule) != 1:
            raise CarryRulesError(f"{path}: [[carry]] #{number} needs exactly one of json = \"$.a.b\" or header = \"X-Name\"")
        if "header" in rule:
            headers.add(str(rule["header"]).lower())
        elif not str(rule["json"]).startswith("$"):
            raise CarryRulesError(f"{path}: [[carry]] #{number}: json path {rule['json']!r} must start with $")
        else:
            paths.append(_parse_path(str(rule["json"]), f"{path}: [[carry]] #{number}"))
    return CarryRules(tuple(paths), frozenset(headers))


def _parse_path(text: str, where: str) -> tuple[str | int, ...]:
    """`$.items[*].id` → ("items", "*", "id"); `[3]` → 3. The dialect of `corpora.jsonpath`, exact places only."""
    try:
        parsed = parse_json_path(text)
    except JsonPathError as exc:
        raise CarryRulesError(f"{where}: {exc}") from None
    if not parsed.exact:
        raise CarryRulesError(f"{where}: json path {text!r} must name exact places: no `..`, no globs")
    return tuple(s.name if s.kind == "member" else s.index if s.kind == "index" else "*" for s in parsed.steps)


def harvest(response: Response, rules: CarryRules = CarryRules()) -> dict[Location, Scalar]:
    """Every id-like value of a response (and whatever the rules name), by where it sits."""
    found: dict[Location, Scalar] = {}
    for location, value in _leaves(_json(response.body)):
        if _id_like(value) or (isinstance(value, (str, int)) and not isinstance(value, bool) and rules.forces(location)):
            found[location] = value
    for name, value in response.headers:
        lowered = name.lower()
        if lowered in rules.headers:
            found[("header", lowered)] = value
        elif lowered == "location":
            for index, segment in enumerate(value.split("?")[0].split("/")):
                if _id_like(segment):
                    found[("location", index)] = unquote(segment)
        elif lowered == "set-cookie":
            for morsel in SimpleCookie(value).values():
                if _id_like(morsel.value):
                    found[("cookie", morsel.key)] = morsel.value
    return found


class SessionCorrelator:
    """One session's mapping from recorded values to each target's live values.

    Only a value that the reference targets (the baselines) changed is dynamic:
    a candidate answering something else where the baseline answered as
    recorded is a divergence to report, not an id to carry forward.
    """

    def __init__(
        self, references: frozenset[str] = frozenset({"baseline", "baseline2"}), rules: CarryRules = CarryRules()
    ) -> None:
        self._references = references
        self._rules = rules
        self._mapping: dict[str, dict[Scalar, Scalar]] = {}

    def observe(self, recorded: Exchange, live: Mapping[str, Response | None]) -> None:
        if recorded.response is None:
            return
        recorded_values = harvest(recorded.response, self._rules)
        if not recorded_values:
            return
        answers = {target: harvest(response, self._rules) for target, response in live.items() if response is not None}
        references = [answers.get(name, {}) for name in self._references if name in live]
        if not references:
            return
        dynamic = {
            location: value
            for location, value in recorded_values.items()
            if all(_changed(value, reference.get(location)) for reference in references)
        }
        for target, values in answers.items():
            for location, value in dynamic.items():
                answer = values.get(location)
                if _changed(value, answer):
                    self._mapping.setdefault(target, {}).setdefault(value, answer)  # type: ignore[arg-type]

    def rewrite(self, request: Request, target: str) -> Request:
        mapping = self._mapping.get(target)
        if not mapping:
            return request
        path = "/".join(_segment(segment, mapping) for segment in request.path.split("/"))
        query = "&".join(_query_item(item, mapping) for item in request.query.split("&")) if request.query else ""
        headers: Headers = [(name, _in_text(value, mapping)) for name, value in request.headers]
        body = _body(request.body, mapping)
        if (path, query, headers, body) == (request.path, request.query, request.headers, request.body):
            return request
        return replace(request, path=path, query=query, headers=headers, body=body)


def _changed(recorded: Scalar, live: Scalar | None) -> bool:
    return live is not None and live != recorded and type(live) is type(recorded)


def _segment(segment: str, mapping: dict[Scalar, Scalar]) -> str:
    decoded = unquote(segment)
    for key in (decoded, int(decoded) if decoded.isdigit() else None):
        if key is not None and key in mapping:
            return quote(str(mapping[key]), safe="")
    return segment


def _query_item(item: str, mapping: dict[Scalar, Scalar]) -> str:
    name, sep, value = item.partition("=")
    return f"{name}{sep}{_segment(value, mapping)}" if sep else item


def _in_text(text: str, mapping: dict[Scalar, Scalar]) -> str:
    """Tokens inside header values (cookies, bearer tokens): long values only, so nothing is hit by chance."""
    for recorded, live in mapping.items():
        if not isinstance(recorded, str):
            continue
        if text == recorded:
            return str(live)
        if len(recorded) >= _MIN_HEADER_TEXT and recorded in text:
            text = text.replace(recorded, str(live))
    return text


def _body(body: bytes, mapping: dict[Scalar, Scalar]) -> bytes:
    document = _json(body)
    if document is None:
        return body
    changed = False

    def swap(node: Any) -> Any:
        nonlocal changed
        if isinstance(node, dict):
            return {key: swap(value) for key, value in node.items()}
        if isinstance(node, list):
            return [swap(value) for value in node]
        if _id_like(node) and node in mapping:
            changed = True
            return mapping[node]
        return node

    rewritten = swap(document)
    return json.dumps(rewritten, ensure_ascii=False).encode("utf-8") if changed else body
