"""What the recorded traffic says each endpoint accepts: the shapes the fuzz strategies are built from.

Per endpoint: its path parameters, query parameters, headers and JSON body,
each summarized as a `ValueShape` — the JSON types seen, numeric ranges,
string lengths and formats, the recorded values themselves, which object keys
are always there and which only sometimes. A query string and a header list
are objects of strings here, so "a parameter that is sometimes missing" and
"a body field that is sometimes missing" are one idea, inferred once.

Memory stays bounded whatever the corpus size: at most `KEPT_VALUES` distinct
values and `KEPT_SEEDS` distinct requests are kept per place and endpoint.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import parse_qsl

from google.protobuf.descriptor import Descriptor

from replaydiff.corpora import Exchange, Request
from replaydiff.corpora.endpoints import EndpointPatterns, is_grpc_endpoint
from replaydiff.corpora.grpc import GrpcFramingError, is_grpc, split_messages
from replaydiff.diff.messages import MessageError, wire_document

KEPT_VALUES = 64
KEPT_SEEDS = 64
ENUM_MAX_VALUES = 12
"""A place with at most this many distinct strings, each seen at least twice on average, is enum-like."""

FORMATS: dict[str, re.Pattern[str]] = {
    "uuid": re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"),
    "email": re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
    "date": re.compile(r"^\d{4}-\d{2}-\d{2}$"),
    "datetime": re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$"),
    "integer": re.compile(r"^-?\d{1,18}$"),
}
"""Checked in order; a place has a format when every string recorded there matches it."""

_PARAMETER = re.compile(r"\{[^{}/]+\}")
"""A segment holding a parameter, whole (`{id}`) or inside (`{id}.json`): its recorded values are observed whole."""


def json_kind(value: Any) -> str:
    """The JSON type of a decoded value; bool before int because Python's bool is an int."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "list" if isinstance(value, list) else "object"


def string_format(text: str) -> str | None:
    return next((name for name, pattern in FORMATS.items() if pattern.match(text)), None)


@dataclass
class ValueShape:
    """Everything recorded at one place of a document, folded into a summary that can generate look-alikes."""

    count: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    numbers: Counter[int | float] = field(default_factory=Counter)
    low: float | None = None
    high: float | None = None
    strings: Counter[str] = field(default_factory=Counter)
    min_length: int | None = None
    max_length: int = 0
    formats: Counter[str | None] = field(default_factory=Counter)
    fields: dict[str, ValueShape] = field(default_factory=dict)
    """Object keys in the order first seen; each key's shape counts the objects that had it."""
    items: ValueShape | None = None
    min_items: int | None = None
    max_items: int = 0

    def observe(self, value: Any) -> None:
        self.count += 1
        kind = json_kind(value)
        self.kinds[kind] += 1
        if kind in ("int", "float"):
            self._observe_number(value)
        elif kind == "str":
            self._observe_string(value)
        elif kind == "list":
            self._observe_list(value)
        elif kind == "object":
            for key, member in value.items():
                self.fields.setdefault(key, ValueShape()).observe(member)

    def _observe_number(self, value: int | float) -> None:
        self.low = value if self.low is None else min(self.low, value)
        self.high = value if self.high is None else max(self.high, value)
        _keep(self.numbers, value)

    def _observe_string(self, value: str) -> None:
        self.min_length = len(value) if self.min_length is None else min(self.min_length, len(value))
        self.max_length = max(self.max_length, len(value))
        self.formats[string_format(value)] += 1
        _keep(self.strings, value)

    def _observe_list(self, value: list[Any]) -> None:
        self.min_items = len(value) if self.min_items is None else min(self.min_items, len(value))
        self.max_items = max(self.max_items, len(value))
        if value and self.items is None:
            self.items = ValueShape()
        for item in value:
            assert self.items is not None
            self.items.observe(item)

    @property
    def nullable(self) -> bool:
        return self.kinds["null"] > 0

    @property
    def format(self) -> str | None:
        """The format every recorded string had, if they all had the same one."""
        return next(iter(self.formats)) if len(self.formats) == 1 else None

    @property
    def enum_like(self) -> bool:
        distinct = len(self.strings)
        return 0 < distinct <= ENUM_MAX_VALUES and self.kinds["str"] >= 2 * distinct

    def required(self, key: str) -> bool:
        """Present in every object recorded here."""
        return self.fields[key].count == self.kinds["object"]


def _keep(counter: Counter[Any], value: Any) -> None:
    """Counts a value, but stops admitting new distinct ones at `KEPT_VALUES`: ids must not grow memory."""
    if value in counter or len(counter) < KEPT_VALUES:
        counter[value] += 1


@dataclass
class EndpointShape:
    """One endpoint's requests as recorded: enough to generate new ones and to replay the recorded ones."""

    endpoint: str
    method: str
    segments: tuple[str, ...]
    """The path template split on `/`; a `{name}` segment is a parameter."""
    exemplar: Request
    """Scheme, host, port and HTTP version for generated requests."""
    params: list[ValueShape] = field(default_factory=list)
    query: ValueShape = field(default_factory=ValueShape)
    headers: ValueShape = field(default_factory=ValueShape)
    body: ValueShape = field(default_factory=ValueShape)
    raw_bodies: Counter[bytes] = field(default_factory=Counter)
    """Bodies that are not JSON documents (empty ones included), replayed as recorded."""
    seeds: dict[str, Request] = field(default_factory=dict)
    exchanges: int = 0
    grpc: bool = False
    """A gRPC method: `body` holds the shape of its request messages read by wire format (members by field number)."""
    grpc_input: Descriptor | None = None
    """The method's input type when a schema describes it: generated messages follow it rather than the shape."""

    @property
    def parameter_positions(self) -> list[int]:
        return [i for i, segment in enumerate(self.segments) if _PARAMETER.search(segment)]

    @property
    def json_body(self) -> bool:
        """Every recorded body was a JSON document, so generating new ones is meaningful."""
        return self.body.count > 0 and not self.raw_bodies

    def observe(self, request: Request) -> None:
        self.exchanges += 1
        segments = request.path.split("/")
        if not self.params:
            self.params = [ValueShape() for _ in self.parameter_positions]
        for shape, position in zip(self.params, self.parameter_positions, strict=True):
            shape.observe(segments[position])
        self.query.observe(dict(parse_qsl(request.query, keep_blank_values=True)))
        self.headers.observe({k: v for k, v in request.headers if k.lower() != "content-length"})  # follows the body
        if not (self.grpc and self._observe_message(request.body)):
            self._observe_body(request.body)
        key = request.method + " " + request.target + "\0" + request.body.decode("utf-8", "replace")
        if key not in self.seeds and len(self.seeds) < KEPT_SEEDS:
            self.seeds[key] = request

    def _observe_message(self, body: bytes) -> bool:
        """A request of one message, shaped by wire format; False for anything else (kept as a raw body)."""
        try:
            framed = split_messages(body)
            if len(framed) != 1 or framed[0].compressed:
                return False
            self.body.observe(wire_document(framed[0].payload))
        except (GrpcFramingError, MessageError):
            return False
        return True

    def _observe_body(self, body: bytes) -> None:
        try:
            document = json.loads(body) if body.strip() else None
        except (ValueError, RecursionError):
            document = None
        if isinstance(document, dict | list):
            self.body.observe(document)
        elif len(self.raw_bodies) < KEPT_VALUES or body in self.raw_bodies:
            self.raw_bodies[body] += 1

    def recorded(self) -> list[Request]:
        """The distinct recorded requests, smallest first, so hypothesis shrinks toward the simplest."""
        return sorted(self.seeds.values(), key=lambda r: (len(r.body), len(r.target), r.target, r.body))


def infer_endpoints(exchanges: Iterable[Exchange], patterns: EndpointPatterns | None = None) -> dict[str, EndpointShape]:
    """Shapes by endpoint template, in the order endpoints first appear in the corpus."""
    templates = patterns or EndpointPatterns()
    shapes: dict[str, EndpointShape] = {}
    for exchange in exchanges:
        request = exchange.request
        endpoint = templates.endpoint(request.method, request.path)
        shape = shapes.get(endpoint)
        if shape is None:
            method, _, template = endpoint.partition(" ")
            if grpc := is_grpc_endpoint(endpoint) and is_grpc(request.headers):
                method, template = request.method.upper(), request.path  # a POST, never templated
            shape = shapes[endpoint] = EndpointShape(endpoint, method, tuple(template.split("/")), request, grpc=grpc)
        shape.observe(request)
    return shapes


def select(shapes: dict[str, EndpointShape], globs: Iterable[str]) -> list[EndpointShape]:
    """The endpoints matching any glob, on the endpoint (`POST /api/*`) or on its path alone (`/api/cart/*`)."""
    wanted = list(globs) or ["*"]
    return [
        shape
        for endpoint, shape in shapes.items()
        if any(fnmatchcase(endpoint, glob) or fnmatchcase(endpoint.partition(" ")[2], glob) for glob in wanted)
    ]
