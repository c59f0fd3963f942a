"""Endpoint templates: `/users/123`, `/users/9f1c…` and `/books/1101.json` name endpoints `/users/{id}`, `/books/{id}.json`.

Three layers, the first that applies wins:

1. the user's templates (`EndpointPatterns`, from a rules file or an OpenAPI document);
2. templates learned from the traffic (`LearnedEndpoints`, see `learn_endpoints` for the rule): a segment
   position under one prefix whose values are many and mostly seen once (slugs, record names) becomes `{name}`;
3. the fixed per-segment rule (`path_template`): a segment that is an id (number, UUID, long hex, long token)
   becomes `{id}`, and so does the id inside a segment (`{id}.json`, `item-{id}`, `v2-{id}`, `{id}.csv`).

A gRPC call is never templated: `POST /shop.Catalog/GetItem` is the endpoint `grpc shop.Catalog/GetItem`
(`grpc_endpoint`), whatever the patterns or the learned templates say.

Shared by `inspect`, the replayer (which stamps each result with its endpoint), the differ (which counts noise
and latency per endpoint), `fuzz` and `nightly`, so all of them group alike. An endpoint string the replayer
stamped can be re-templated (`EndpointPatterns.retemplate`), so results diff without the corpus.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from replaydiff.corpora.files import CorpusReader
from replaydiff.corpora.grpc import endpoint_name

_ID = r"""(?:
        \d+                                   # numbers
      | [0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}  # UUIDs
      | [0-9a-fA-F]{12,}                      # long hex ids and digests
      | (?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{20,}  # long base64-like tokens with a digit
    )"""
_ID_SEGMENT = re.compile(rf"^{_ID}$", re.VERBOSE)
_ID_IN_SEGMENT = re.compile(
    r"""^(?P<prefix>[A-Za-z][A-Za-z0-9]*[-_])?   # item-42, v2-42, user_42
         (?P<id>(?:\d+|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|[0-9a-fA-F]{12,}))
         (?P<suffix>\.[A-Za-z][A-Za-z0-9]{0,7})?$  # 42.json, 42.csv
    """,
    re.VERBOSE,
)
"""An id with a literal prefix ending in `-` or `_`, or a file extension, or both; numbers, UUIDs and long hex only,
so `v2`, `2024-report` or `index.html` stay literal."""
_PARAMETER = re.compile(r"^\{[^{}/]+\}$")


def template_problem(template: str) -> str | None:
    """What is wrong with a user's path template, in words, or None: a parameter is a whole segment (`{userId}`),
    so a brace anywhere else (`/users/{userId`, `/a}`, `/x{id}y`) is a mistake, not a literal to match."""
    for segment in template.split("/"):
        if ("{" in segment or "}" in segment) and not _PARAMETER.match(segment):
            return f"segment {segment!r} is not a parameter: write a whole segment in braces, such as {{userId}}"
    return None
"""A whole path segment like `{userId}`, as OpenAPI writes path parameters."""
LEARNED_PARAMETER = "{name}"
_EXTENSION = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,7}$")
"""`.json`, `.csv`: a learned parameter keeps it (`{name}.json`), so a record's JSON and HTML stay apart."""

MIN_DISTINCT = 10
"""A position becomes a parameter only with at least this many distinct values…"""
RARE_HITS = 5
"""…and its median value seen on at most this many exchanges: record names, not a table of contents."""
KEEP_HITS = 5
KEEP_SHARE = 0.05
"""At a learned position a value with at least `KEEP_HITS` exchanges and `KEEP_SHARE` of the position's stays
literal (`/users/me` beside `/users/{name}`)."""


def segment_template(segment: str) -> str:
    """The fixed rule for one segment: `{id}` for an id, the id inside replaced (`{id}.json`), else as is."""
    if _ID_SEGMENT.match(segment):
        return "{id}"
    if (inner := _ID_IN_SEGMENT.match(segment)) is not None and (inner["prefix"] or inner["suffix"]):
        return f"{inner['prefix'] or ''}{{id}}{inner['suffix'] or ''}"
    return segment


@lru_cache(maxsize=65536)
def path_template(path: str) -> str:
    return "/".join(segment_template(segment) for segment in path.split("/"))


GRPC_PREFIX = "grpc "
_GRPC_PATH = re.compile(r"^/(?:[A-Za-z_][A-Za-z0-9_]*\.)+[A-Za-z_][A-Za-z0-9_]*/[A-Za-z_][A-Za-z0-9_]*$")
"""`/package.Service/Method`: gRPC's path (PROTOCOL-HTTP2.md). Endpoints are named from method and path alone
(results carry no headers), so a call is recognised by this shape; a service declared without a package
(`/Greeter/SayHello`) cannot be told from a REST path and keeps its HTTP name."""


def grpc_endpoint(method: str, path: str) -> str | None:
    """`grpc package.Service/Method` for a gRPC call (a POST to a gRPC path), else None."""
    return endpoint_name(path) if method.upper() == "POST" and _GRPC_PATH.match(path) else None


def is_grpc_endpoint(endpoint: str) -> bool:
    return endpoint.startswith(GRPC_PREFIX)


def endpoint_of(method: str, path: str) -> str:
    return grpc_endpoint(method, path) or f"{method.upper()} {path_template(path)}"


Prefix = tuple[str, ...]
"""The templated segments before a position (the empty first segment of an absolute path included)."""


@dataclass(frozen=True, slots=True)
class LearnedPosition:
    """One segment position the traffic showed to be a parameter: what `inspect --endpoints` prints."""

    prefix: Prefix
    distinct: int
    exchanges: int
    examples: tuple[str, ...]
    literals: frozenset[str]
    """Values frequent enough to stay endpoints of their own."""

    @property
    def template(self) -> str:
        return "/".join((*self.prefix, LEARNED_PARAMETER)) or "/"


class LearnedEndpoints:
    """Templates learned from traffic: the fixed per-segment rule, plus the positions `learn_endpoints` found."""

    def __init__(self, positions: Iterable[LearnedPosition] = ()) -> None:
        self.positions = sorted(positions, key=lambda p: p.prefix)
        self._by_prefix = {position.prefix: position for position in self.positions}
        self.path = lru_cache(maxsize=65536)(self._path)

    def __bool__(self) -> bool:
        return bool(self.positions)

    def _path(self, path: str) -> str:
        templated: list[str] = []
        for segment in path.split("/"):
            segment = segment_template(segment)
            learned = self._by_prefix.get(tuple(templated))
            if learned is not None:
                segment = _parameterized(segment, learned.literals)
            templated.append(segment)
        return "/".join(templated)

    def endpoint(self, method: str, path: str) -> str:
        return grpc_endpoint(method, path) or f"{method.upper()} {self.path(path)}"


def learn_endpoints(paths: Iterable[str] | Counter[str]) -> LearnedEndpoints:
    """Learns, position by position from the left, which segments are parameters.

    The rule: after the fixed per-segment rule, group the paths by their
    templated prefix; a position is a parameter when it holds at least
    `MIN_DISTINCT` distinct values (counted without a file extension) and its
    median value was seen on at most `RARE_HITS` exchanges (those of the paths
    below it included).
    The parameter keeps the extension: `/tags/war-and-peace.json` → `/tags/{name}.json`. A handful of literals hit over and
    over (`me`, `search`, a table or collection name) never qualifies; a
    position of slugs or record names does. Frequent values at a learned
    position stay literal (see `KEEP_HITS`). Paths may be raw or already
    templated (endpoints the replayer stamped): `{…}` segments stay as they are,
    so learning twice changes nothing.
    """
    counts = paths if isinstance(paths, Counter) else Counter(paths)
    rows = [([segment_template(s) for s in path.split("/")], n) for path, n in counts.items()
            if not _GRPC_PATH.match(path)]  # a service's many rarely called methods are not a parameter
    positions: list[LearnedPosition] = []
    for depth in range(1, max((len(segments) for segments, _ in rows), default=0)):
        values: defaultdict[Prefix, Counter[str]] = defaultdict(Counter)
        for segments, n in rows:
            if len(segments) > depth:
                values[tuple(segments[:depth])][segments[depth]] += n
        for prefix, seen in values.items():
            if (learned := _learned(prefix, seen)) is None:
                continue
            positions.append(learned)
            for segments, _ in rows:
                if len(segments) > depth and tuple(segments[:depth]) == prefix:
                    segments[depth] = _parameterized(segments[depth], learned.literals)
    return LearnedEndpoints(positions)


def _stem(segment: str) -> tuple[str, str]:
    """(`war-and-peace`, `.json`) for `war-and-peace.json`."""
    extension = _EXTENSION.search(segment)
    return (segment[: extension.start()], extension.group()) if extension else (segment, "")


def _parameterized(segment: str, literals: frozenset[str]) -> str:
    stem, extension = _stem(segment)
    if stem in literals or not stem or "{" in stem:
        return segment
    return LEARNED_PARAMETER + extension


def corpus_endpoints(corpus: Path | str) -> LearnedEndpoints:
    """What a corpus file's paths show, in one streaming pass: the templates `replay`, `fuzz` and `inspect` use."""
    return learn_endpoints(Counter(exchange.request.path for exchange in CorpusReader(corpus)))


def _learned(prefix: Prefix, seen: Counter[str]) -> LearnedPosition | None:
    """Values are counted by stem: `books`, `books.json` and `books.csv` are one table, not three values."""
    candidates: Counter[str] = Counter()
    for value, n in seen.items():
        stem = _stem(value)[0]
        if stem and "{" not in stem:
            candidates[stem] += n
    if len(candidates) < MIN_DISTINCT:
        return None
    if statistics.median_low(candidates.values()) > RARE_HITS:
        return None
    total = sum(seen.values())
    literals = frozenset(v for v, n in candidates.items() if n >= KEEP_HITS and n >= KEEP_SHARE * total)
    examples = tuple(sorted(v for v in candidates if v not in literals)[:3])
    return LearnedPosition(prefix, len(candidates) - len(literals), total, examples, literals)


@dataclass(frozen=True, slots=True)
class _Pattern:
    segments: tuple[str | None, ...]
    """Literal segments, `None` where the pattern has a parameter."""
    template: str
    methods: frozenset[str] | None
    """Upper-case methods it applies to; `None` for every method."""

    @property
    def literals(self) -> int:
        return sum(segment is not None for segment in self.segments)

    def matches(self, method: str, segments: list[str]) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return len(segments) == len(self.segments) and all(
            want is None or want == got for want, got in zip(self.segments, segments, strict=True)
        )


class EndpointPatterns:
    """User templates such as `/users/{userId}`; a path none of them matches keeps the learned or default template.

    As in OpenAPI, a literal segment beats a parameter: `/users/me` wins over
    `/users/{userId}` for the path `/users/me`, whatever the order given.
    """

    def __init__(
        self, patterns: Iterable[tuple[str, Iterable[str] | None]] = (), learned: LearnedEndpoints | None = None
    ) -> None:
        """`patterns`: (path template, methods or `None` for any method); `learned`: what the traffic showed."""
        self.learned = learned or LearnedEndpoints()
        self._given = [(template, None if methods is None else tuple(methods)) for template, methods in patterns]
        compiled = [
            _Pattern(
                tuple(None if _PARAMETER.match(s) else s for s in template.split("/")),
                template,
                None if methods is None else frozenset(m.upper() for m in methods),
            )
            for template, methods in self._given
        ]
        self._patterns = sorted(compiled, key=lambda p: -p.literals)  # stable: ties keep the given order

    def __bool__(self) -> bool:
        return bool(self._patterns) or bool(self.learned)

    def __add__(self, other: EndpointPatterns) -> EndpointPatterns:
        """Both sets; among equally specific patterns, this one's come first."""
        return EndpointPatterns([*self._given, *other._given], self.learned or other.learned)

    def __len__(self) -> int:
        """The user's patterns; learned templates are not counted."""
        return len(self._patterns)

    def with_learned(self, learned: LearnedEndpoints) -> EndpointPatterns:
        """These patterns, falling back to `learned` rather than to the fixed per-segment rule alone."""
        return EndpointPatterns(self._given, learned)

    def endpoint(self, method: str, path: str) -> str:
        if (grpc := grpc_endpoint(method, path)) is not None:
            return grpc
        method = method.upper()
        segments = path.split("/")
        for pattern in self._patterns:
            if pattern.matches(method, segments):
                return f"{method} {pattern.template}"
        return self.learned.endpoint(method, path)

    def retemplate(self, endpoint: str) -> str:
        """An endpoint string as the replayer stamped it (`GET /users/{id}`), re-templated with these patterns.

        Works because a default `{id}` segment still matches a pattern's
        parameter; a segment the default already replaced cannot be told
        apart again, so patterns can merge or rename endpoints but not split
        one the default templating merged.
        """
        if is_grpc_endpoint(endpoint):
            return endpoint
        method, _, path = endpoint.partition(" ")
        return self.endpoint(method, path) if self._patterns or self.learned else endpoint
