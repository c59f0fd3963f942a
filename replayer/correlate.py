"""Stateful sessions: carry what a target returned into the session's later requests, as its client would.

A recorded session creates a record (`POST` answers id `A` and `ETag: "7"`),
reads it back with `If-None-Match: "7"`, pages through a listing by the
`Next-Page` URL it was given. Replayed, each target answers its own id, its own
ETag, its own page token, and the recorded requests would miss. What to carry
is learned from the corpus itself, with no configuration:

- **Harvest.** Every value a response holds, by where it sits: JSON leaves
  (strings and integers), every response header (whole; an ETag also without
  its quotes; a Set-Cookie's value), and inside any URL (`Location`,
  `Next-Page`, `Link`, a URL in a JSON string) its path segments and query
  values.
- **Learn.** A recorded value is compared with the value at the same place of
  each target's live answer. Where both reference targets (the baselines)
  answered something else, the value is dynamic, and each target's own value
  replaces it in the session's later requests.
- **Carry.** Wherever a later request of the session sends the recorded value
  (the recording shows it flowing from an answer into that request), it is
  replaced: a path segment, a query value, a whole header value or one item of
  a comma list (`If-Match`, `If-None-Match`), a token of at least 8
  characters inside a header (`Bearer …`, a cookie), a JSON leaf.

The false-positive guard (a value rewritten by coincidence changes what the
request asks for):
- only whole slots are matched, never a substring (inside header text: whole
  tokens of 8 characters or more);
- values of fewer than 3 characters (`7`, `42`, `ok`), booleans, null and
  floats are never carried, unless a rule names their place;
- a value the session itself sent before the answer that returned it is the
  client's own (an id it chose, echoed back), never carried;
- a value is dynamic only if every reference target changed it: a candidate
  alone answering otherwise is a divergence to report, not a value to carry;
- the first value a target answered for a recorded value is kept;
- headers that change with every answer whatever the state (`Date`,
  `Content-Length`, `Age`, `Expires`, hop-by-hop headers) are not harvested,
  and `Host` and `Content-Length` of a request are never rewritten.

`CarryRules` (`--correlation-rules`) add places whose values are carried past
the guard. Counts: `rewrite` says how many values it carried into a request
for a target, and which learned values it could not carry because that target
never answered them (its answer failed, or lacked the field): a broken
session shows as such, not as divergences.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import orjson

from replaydiff.corpora import Exchange, Headers, Request, Response
from replaydiff.corpora.jsonpath import JsonPathError, parse_json_path
from replaydiff.corpora.tomlfile import read_toml

Scalar = str | int
Location = tuple[str | int, ...]
"""Where a value sits in an answer: ("json", "items", 0, "id"); ("header", "etag", 0) for the first ETag header,
("header", "etag", 0, "bare") without its quotes; ("header", "next-page", 0, 0, "query", "_token", 0) inside a URL
(the header's first URL, its first `_token`); ("cookie", name)."""

MIN_CARRIED_CHARS = 3
"""Shorter values are too likely to be sent by coincidence (a page number, a flag) to be carried unasked."""
MIN_TOKEN_CHARS = 8
"""Inside a header's text (a bearer token, a cookie), only whole tokens this long are carried."""
MAX_SESSION_VALUES = 20_000
"""Per session and target, learned values beyond this are not kept: a session's memory stays bounded."""

_NOT_HARVESTED = frozenset({
    "date", "content-length", "age", "expires", "server", "connection", "keep-alive", "transfer-encoding",
    "content-type", "content-encoding", "vary", "accept-ranges", "cache-control", "pragma",
})  # fmt: skip
_NEVER_REWRITTEN = frozenset({"host", "content-length"})
_TOKEN = re.compile(r"[A-Za-z0-9._~+/:-]{%d,}=*" % MIN_TOKEN_CHARS)
_LINK = re.compile(r"<([^>]*)>")


def _carriable_value(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return len(str(value)) >= MIN_CARRIED_CHARS
    return isinstance(value, str) and len(value) >= MIN_CARRIED_CHARS


def _any_value(value: object) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool) and value != ""


def _json(body: bytes) -> Any:
    if not body or body.lstrip()[:1] not in (b"{", b"["):
        return None
    try:
        return orjson.loads(body)  # several times json's speed; every answer of every target is read
    except orjson.JSONDecodeError:
        try:
            return json.loads(body)  # integers beyond 64 bits
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


def _url_parts(text: str, prefix: Location) -> Iterator[tuple[Location, str]]:
    """Path segments and query values of a URL (absolute, or a path starting with /); nothing for other text."""
    if not text.startswith(("http://", "https://", "/")) or " " in text.strip():
        return
    try:
        parts = urlsplit(text.strip())
    except ValueError:
        return
    for index, segment in enumerate(parts.path.split("/")):
        if segment:
            yield (*prefix, "segment", index), unquote(segment)
    occurrences: dict[str, int] = {}
    for item in parts.query.split("&") if parts.query else ():
        name, sep, value = item.partition("=")
        if sep and value:
            name = unquote(name)
            occurrence = occurrences[name] = occurrences.get(name, -1) + 1  # by name: parameters may move
            yield (*prefix, "query", name, occurrence), unquote(value.replace("+", " "))


def _etag_item(value: str) -> str:
    """`W/"7"` and `"7"` → `7`: what a client may send on its own, e.g. as `?_since=7`."""
    item = value.strip()
    item = item[2:] if item.startswith("W/") else item
    return item[1:-1] if len(item) >= 2 and item[0] == item[-1] == '"' else item


@dataclass(frozen=True, slots=True)
class CarryRules:
    """Places whose values are carried forward even where the guard would leave them (a one-letter code).

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
            paths.append(exact_json_path(str(rule["json"]), f"{path}: [[carry]] #{number}"))
    return CarryRules(tuple(paths), frozenset(headers))


def exact_json_path(text: str, where: str) -> tuple[str | int, ...]:
    """`$.items[*].id` → ("items", "*", "id"); `[3]` → 3. The dialect of `corpora.jsonpath`, exact places only."""
    try:
        parsed = parse_json_path(text)
    except JsonPathError as exc:
        raise CarryRulesError(f"{where}: {exc}") from None
    if not parsed.exact:
        raise CarryRulesError(f"{where}: json path {text!r} must name exact places: no `..`, no globs")
    return tuple(s.name if s.kind == "member" else s.index if s.kind == "index" else "*" for s in parsed.steps)


def harvest(response: Response, rules: CarryRules = CarryRules(), *, guard: bool = True) -> dict[Location, Scalar]:
    """Every value of a response a later request could send back (and whatever the rules name), by where it sits.

    `guard=False` (a live answer, compared place by place with the recording) keeps short values too."""
    return {**harvest_body(response.body, rules, guard=guard), **harvest_headers(response.headers, rules, guard=guard)}


def harvest_body(body: bytes, rules: CarryRules, *, guard: bool) -> dict[Location, Scalar]:
    found: dict[Location, Scalar] = {}
    carriable = _carriable_value if guard else _any_value
    for location, value in _leaves(_json(body)):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            continue
        if carriable(value) or rules.forces(location):
            found[location] = value
        if isinstance(value, str) and "/" in value:
            for part, text in _url_parts(value, location):
                if carriable(text):
                    found[part] = text
    return found


def harvest_headers(headers: Headers, rules: CarryRules, *, guard: bool) -> dict[Location, Scalar]:
    found: dict[Location, Scalar] = {}
    carriable = _carriable_value if guard else _any_value
    seen: dict[str, int] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in _NOT_HARVESTED:
            continue
        occurrence = seen[lowered] = seen.get(lowered, -1) + 1
        place: Location = ("header", lowered, occurrence)
        if lowered == "set-cookie":
            try:
                morsels = SimpleCookie(value).values()
            except CookieError:
                continue
            for morsel in morsels:
                if carriable(morsel.value) or lowered in rules.headers:
                    found[("cookie", morsel.key)] = morsel.value
            continue
        if carriable(value) or lowered in rules.headers:
            found[place] = value
        if lowered == "etag" and carriable(bare := _etag_item(value)):
            found[(*place, "bare")] = bare
        if "/" in value:
            for number, url in enumerate(_LINK.findall(value) or [value]):
                for part, text in _url_parts(url, (*place, number)):
                    if carriable(text):
                        found[part] = text
    return found


@dataclass(frozen=True, slots=True)
class Carried:
    """One request as rewritten for one target, and what correlation did to it."""

    request: Request
    carried: int = 0
    """Values replaced by what this target answered earlier in the session."""
    missing: tuple[str, ...] = ()
    """Where the request sends a value the recording learned from an answer that this target never answered
    (its answer failed or lacked that field): `path`, `query _token`, `header If-Match`, `json $.data.id`."""


@dataclass(slots=True)
class CarryCount:
    carried: int = 0
    not_found: int = 0
    where: Counter[str] = field(default_factory=Counter)
    """Where the values not found were to be sent (`header If-Match`), with how often."""

    def to_json(self) -> dict[str, Any]:
        return {"carried": self.carried, "not_found": self.not_found, "where": dict(self.where.most_common(5))}


@dataclass(slots=True)
class CarryCounts:
    """Per endpoint and target: values carried into its requests, and learned values the target never answered."""

    by_endpoint: dict[str, dict[str, CarryCount]] = field(default_factory=dict)

    def add(self, endpoint: str, target: str, carried: int, missing: Sequence[str]) -> None:
        if not carried and not missing:
            return
        count = self.by_endpoint.setdefault(endpoint, {}).setdefault(target, CarryCount())
        count.carried += carried
        count.not_found += len(missing)
        count.where.update(missing)

    def merge(self, other: CarryCounts) -> None:
        for endpoint, targets in other.by_endpoint.items():
            for target, theirs in targets.items():
                count = self.by_endpoint.setdefault(endpoint, {}).setdefault(target, CarryCount())
                count.carried += theirs.carried
                count.not_found += theirs.not_found
                count.where.update(theirs.where)

    def to_json(self) -> dict[str, dict[str, dict[str, Any]]]:
        return {
            endpoint: {target: count.to_json() for target, count in targets.items()}
            for endpoint, targets in sorted(self.by_endpoint.items())
        }

    @classmethod
    def from_json(cls, data: dict[str, dict[str, dict[str, Any]]]) -> CarryCounts:
        counts = cls()
        for endpoint, targets in data.items():
            for target, count in targets.items():
                counts.by_endpoint.setdefault(endpoint, {})[target] = CarryCount(
                    int(count["carried"]), int(count["not_found"]), Counter(count.get("where", {}))
                )
        return counts


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
        self._unanswered: dict[str, set[Scalar]] = {}
        """Per target: recorded values it never answered a counterpart of (so far): reported, not carried."""
        self._sent: set[Scalar] = set()
        """Values the session's recorded requests sent: an answer echoing one is not the server's to change."""
        self._server_made: set[str] = set()
        """Recorded text values the baselines changed: made by the server, whatever their shape."""

    def observe(self, recorded: Exchange, live: Mapping[str, Response | None]) -> None:
        if len(self._sent) < MAX_SESSION_VALUES:
            self._sent.update(_sent_values(recorded.request))
        answer = recorded.response
        if answer is None:
            return
        references = [live[name] for name in self._references if name in live]
        if not references:
            return
        # A reference answering the recorded body byte for byte makes none of its values dynamic: the common
        # case (static pages, lists nobody changed) costs a comparison, not a parse.
        with_body = not all(reference is not None and reference.body == answer.body for reference in references)
        self._learn(harvest_headers(answer.headers, self._rules, guard=True), live, body=False)
        if with_body:
            self._learn(harvest_body(answer.body, self._rules, guard=True), live, body=True)

    def _learn(self, recorded: dict[Location, Scalar], live: Mapping[str, Response | None], *, body: bool) -> None:
        recorded = {
            location: value
            for location, value in recorded.items()
            if not any(spelling in self._sent for spelling in _spellings(value)) or self._forced(location)
        }
        if not recorded:
            return
        rules = self._rules
        answers: dict[str, dict[Location, Scalar]] = {}
        for target, response in live.items():
            if response is None:
                answers[target] = {}
            elif body:
                answers[target] = harvest_body(response.body, rules, guard=False)
            else:
                answers[target] = harvest_headers(response.headers, rules, guard=False)
        references = [answers[name] for name in self._references if name in answers]
        for location, value in recorded.items():
            found = [reference.get(location) for reference in references]
            dynamic = all(_changed(value, answer) for answer in found)
            unknown = all(answer is None for answer in found)
            if not dynamic and not unknown:
                continue  # the baselines answered it as recorded: nothing to carry, nothing missing
            if isinstance(value, str) and len(self._server_made) < MAX_SESSION_VALUES:
                self._server_made.add(value)
            for target, values in answers.items():
                answer = values.get(location)
                mapping = self._mapping.setdefault(target, {})
                if dynamic and _changed(value, answer):
                    if len(mapping) < MAX_SESSION_VALUES:
                        mapping.setdefault(value, answer)  # type: ignore[arg-type]
                    self._unanswered.get(target, set()).discard(value)
                elif answer is None and value not in mapping:
                    unanswered = self._unanswered.setdefault(target, set())
                    if len(unanswered) < MAX_SESSION_VALUES:
                        unanswered.add(value)
                elif answer == value:
                    self._unanswered.get(target, set()).discard(value)

    def _forced(self, location: Location) -> bool:
        return (location[0] == "json" and self._rules.forces(location)) or (
            location[0] == "header" and location[1] in self._rules.headers
        )

    def endpoint(self, endpoint: str, path: str) -> str:
        """`endpoint` (the default template of the recorded `path`) with every segment the session learned as
        server-made written `{id}`: the collection named `j_u-KRMN` by a POST is no endpoint of its own, whatever
        its shape. Decided from the recording alone, so every target's record of an exchange has the same."""
        if not self._server_made:
            return endpoint
        segments = path.split("/")
        if not any(unquote(segment) in self._server_made for segment in segments):
            return endpoint
        method, _, template = endpoint.partition(" ")
        templated = template.split("/")
        if len(templated) != len(segments):
            return endpoint
        merged = ("{id}" if unquote(seg) in self._server_made else kept for seg, kept in zip(segments, templated))
        return f"{method} {'/'.join(merged)}"

    def rewrite(self, request: Request, target: str) -> Carried:
        mapping = self._mapping.get(target, {})
        unanswered = self._unanswered.get(target, set())
        if not mapping and not unanswered:
            return Carried(request)
        rewriter = _Rewriter(mapping, unanswered)
        path = "/".join(rewriter.segment(segment, "path") for segment in request.path.split("/"))
        query = "&".join(rewriter.query_item(item) for item in request.query.split("&")) if request.query else ""
        headers: Headers = [(name, rewriter.header(name, value)) for name, value in request.headers]
        body = rewriter.body(request.body)
        missing = tuple(dict.fromkeys(rewriter.missing))
        if (path, query, headers, body) == (request.path, request.query, request.headers, request.body):
            return Carried(request, 0, missing)
        return Carried(replace(request, path=path, query=query, headers=headers, body=body), rewriter.carried, missing)


def _changed(recorded: Scalar, live: Scalar | None) -> bool:
    return live is not None and live != recorded and type(live) is type(recorded)


def _sent_values(request: Request) -> Iterator[Scalar]:
    """The values a request sends: path segments, query values, header values, JSON leaves."""
    for segment in request.path.split("/"):
        if segment:
            yield unquote(segment)
    for item in request.query.split("&") if request.query else ():
        name, sep, value = item.partition("=")
        if sep:
            yield unquote(value.replace("+", " "))
    for _, value in request.headers:
        yield value
    if request.body:
        for _, leaf in _leaves(_json(request.body)):
            if isinstance(leaf, (str, int)) and not isinstance(leaf, bool):
                yield leaf


def _spellings(value: Scalar) -> tuple[Scalar, ...]:
    if isinstance(value, int):
        return (value, str(value))
    if value.isdigit() and len(value) < 20 and value[0] != "0":
        return (value, int(value))
    return (value,)


def _as_type(live: Scalar, recorded: Scalar) -> Scalar:
    if isinstance(recorded, int) and isinstance(live, str):
        return int(live) if live.isdigit() else live
    return str(live) if isinstance(recorded, str) else live


class _Rewriter:
    """Rewrites one request's slots for one target, counting what it carried and what it could not."""

    def __init__(self, mapping: dict[Scalar, Scalar], unanswered: set[Scalar]) -> None:
        self.mapping = mapping
        self.unanswered = unanswered
        self.carried = 0
        self.missing: list[str] = []

    def lookup(self, value: Scalar, where: str) -> Scalar | None:
        """The target's value for a recorded one, in the recorded value's type: a number learned from a JSON
        answer is carried into a query or header as text (`?_since=17`), an ETag's text into a JSON number."""
        for key in _spellings(value):
            if key in self.mapping:
                self.carried += 1
                return _as_type(self.mapping[key], value)
            if key in self.unanswered:
                self.missing.append(where)
                return None
        return None

    def segment(self, segment: str, where: str) -> str:
        live = self.lookup(unquote(segment), where)
        return segment if live is None else quote(str(live), safe="")

    def query_item(self, item: str) -> str:
        name, sep, value = item.partition("=")
        if not sep or not value:
            return item
        live = self.lookup(unquote(value.replace("+", " ")), f"query {unquote(name)}")
        return item if live is None else f"{name}={quote(str(live), safe='')}"

    def header(self, name: str, value: str) -> str:
        if name.lower() in _NEVER_REWRITTEN:
            return value
        where = f"header {name}"
        live = self.lookup(value, where)
        if live is not None:
            return str(live)
        if "," in value or value.startswith(("\"", "W/")):
            items = [self._item(item, where) for item in value.split(",")]
            if any(new is not old for new, old in zip(items, value.split(","))):
                return ",".join(items)
        return _TOKEN.sub(lambda match: str(self.lookup(match.group(), where) or match.group()), value)

    def _item(self, item: str, where: str) -> str:
        """One entity tag of a list: `"7"`, `W/"7"`, each with its spaces kept."""
        stripped = item.strip()
        live = self.lookup(stripped, where)
        if live is not None:
            return item.replace(stripped, str(live))
        bare = _etag_item(stripped)
        if bare != stripped and (live := self.lookup(bare, where)) is not None:
            return item.replace(bare, str(live))
        return item

    def body(self, body: bytes) -> bytes:
        document = _json(body)
        if document is None:
            return body
        carried_before = self.carried

        def swap(node: Any, path: str) -> Any:
            if isinstance(node, dict):
                return {key: swap(value, f"{path}.{key}") for key, value in node.items()}
            if isinstance(node, list):
                return [swap(value, f"{path}[*]") for value in node]
            if isinstance(node, (str, int)) and not isinstance(node, bool):
                live = self.lookup(node, f"json {path}")
                return node if live is None else live
            return node

        rewritten = swap(document, "$")
        if self.carried == carried_before:
            return body
        return json.dumps(rewritten, ensure_ascii=False).encode("utf-8")
