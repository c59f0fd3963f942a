"""Hypothesis strategies for requests like the recorded ones, composed from one small strategy per part.

Each place of a request draws, in this order of preference (which is also the
order hypothesis shrinks toward): the recorded values; their neighbours and
boundaries (0, −1, max+1, empty, very long, unicode); anything of the right
type and format. Rarely (`RARE_ONE_IN`), a place is then broken outright by
a mutation: a field missing or added, a value of the wrong type, an empty or
longer list. Rare, because one broken place usually makes the whole request
a 400 on both sides; the bugs worth finding hide behind requests that are
almost valid.

The recorded requests themselves are one mutation of the top-level strategy,
so every session also replays real traffic.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from replaydiff.corpora import Request
from replaydiff.fuzz.infer import EndpointShape, ValueShape, json_kind

T = TypeVar("T")
Fields = dict[str, SearchStrategy[Any]]
Mutation = Callable[[T], T]

RARE_ONE_IN = 6
VERY_LONG = 10_000
UNICODE_SAMPLES = ("Zoë Ünïcödé", "日本語テキスト", "🚀✨", "مرحبا", "\u00a0\u200b")
EXTRA_FIELD = "x_replaydiff_fuzz"
"""The name of the field added to objects: recognizable in a target's logs."""
WRONG_TYPED: tuple[Any, ...] = (None, True, 0, -1, 1.5, "", "0", [], {})
"""One value of each JSON type (and a few awkward ones) for "a value of the wrong type"."""
INT_BOUNDARIES = (0, -1, 1, 2**31 - 1, 2**31, -(2**31) - 1, 2**53 + 1, 2**63)


@st.composite
def mostly(draw: st.DrawFn, usual: SearchStrategy[T], mutations: SearchStrategy[Mutation[T]]) -> T:
    """`usual`, and one time in `RARE_ONE_IN` that value mutated.

    The mutation is drawn whether or not it is applied, so every example
    makes the same kind of draws in the same order: when the shrinker turns
    the coin back to "usual", every later draw still means what it meant and
    the example stays otherwise the same. (Drawing a different branch instead
    would shift all later draws and hide most shrinks from the shrinker.)
    """
    value = draw(usual)
    mutation = draw(mutations)
    return mutation(value) if draw(st.integers(0, RARE_ONE_IN - 1)) == RARE_ONE_IN - 1 else value


def _replaced_by(replacement: Any, _: Any) -> Any:
    return replacement


def replaced_by(values: SearchStrategy[Any]) -> SearchStrategy[Mutation[Any]]:
    """Mutations that throw the value away for one of `values`."""
    return values.map(lambda value: partial(_replaced_by, value))


def simplest_first(values: set[T]) -> list[T]:
    """Sorted so that shrinking ends at 0, the empty string, the shortest value."""
    return sorted(values, key=lambda v: (abs(v) if isinstance(v, int | float) else len(str(v)), str(v)))


def recorded_or(values: list[T], *others: SearchStrategy[T]) -> SearchStrategy[T]:
    return st.one_of(st.sampled_from(values), *others) if values else st.one_of(*others)


# --- numbers --------------------------------------------------------------------------------


def int_edges(shape: ValueShape) -> list[int]:
    recorded = {int(v) for v in shape.numbers}
    low, high = int(shape.low or 0), int(shape.high or 0)
    neighbours = {v + step for v in recorded for step in (-1, 1)}
    return simplest_first(({low - 1, high + 1, *INT_BOUNDARIES} | neighbours) - recorded)


def integers(shape: ValueShape) -> SearchStrategy[int]:
    recorded = simplest_first({int(v) for v in shape.numbers})
    low, high = int(shape.low or 0), int(shape.high or 0)
    return recorded_or(recorded, st.sampled_from(int_edges(shape)), st.integers(min(low, 0), max(high, 1) * 2))


def floats(shape: ValueShape) -> SearchStrategy[float]:
    recorded = simplest_first({float(v) for v in shape.numbers})
    low, high = float(shape.low or 0), float(shape.high or 0)
    edges = simplest_first({0.0, -1.0, low - 1, high + 1, low - 0.01, high + 0.01, 1e308} - set(recorded))
    return recorded_or(recorded, st.sampled_from(edges), st.floats(min(low, 0.0), max(high, 1.0), allow_nan=False))


# --- strings --------------------------------------------------------------------------------


def string_edges(shape: ValueShape) -> list[str]:
    """Empty, very long, unicode, and for enum-like places the recorded values slightly off."""
    edges = {"", " ", "x" * VERY_LONG, *UNICODE_SAMPLES}
    if shape.format == "integer":
        recorded = {int(s) for s in shape.strings}
        edges |= {str(v + step) for v in recorded for step in (-1, 1)} | {str(v) for v in INT_BOUNDARIES}
    if shape.enum_like:
        edges |= {variant for value in shape.strings for variant in (value.lower(), value.upper(), value + "x")}
    return simplest_first(edges - set(shape.strings))


def formatted(shape: ValueShape) -> SearchStrategy[str]:
    """New strings of the recorded format, or of the recorded lengths when there is no format."""
    match shape.format:
        case "uuid":
            return st.uuids().map(str)
        case "email":
            return st.emails()
        case "date":
            return st.dates().map(lambda d: d.isoformat())
        case "datetime":
            return st.datetimes().map(lambda d: d.isoformat())
        case "integer":
            return st.integers(-(10**6), 10**9).map(str)
    return st.text(min_size=shape.min_length or 0, max_size=max(shape.max_length, 1))


def strings(shape: ValueShape) -> SearchStrategy[str]:
    recorded = simplest_first(set(shape.strings))
    return recorded_or(recorded, st.sampled_from(string_edges(shape)), formatted(shape))


# --- JSON documents -------------------------------------------------------------------------


def wrong_type(shape: ValueShape) -> SearchStrategy[Mutation[Any]]:
    others = [v for v in WRONG_TYPED if json_kind(v) not in shape.kinds]
    return replaced_by(st.sampled_from(others or list(WRONG_TYPED)))


def arrays(shape: ValueShape) -> SearchStrategy[list[Any]]:
    item = json_values(shape.items) if shape.items is not None else st.sampled_from(WRONG_TYPED)
    low = shape.min_items or 0
    usual = st.lists(item, min_size=low, max_size=max(shape.max_items, low))
    longer = st.integers(1, 3).map(lambda n: lambda items: items + items[:n] * 2)
    return mostly(usual, st.one_of(replaced_by(st.just([])), longer, wrong_type(shape)))


def members(shape: ValueShape, value: Callable[[ValueShape], SearchStrategy[Any]]) -> tuple[Fields, Fields]:
    """(required, optional) strategies by key: required keys were in every object recorded here."""
    required: Fields = {}
    optional: Fields = {}
    for key, member in shape.fields.items():
        (required if shape.required(key) else optional)[key] = value(member)
    return required, optional


def field_mutations(required: Fields, extra: SearchStrategy[Any]) -> SearchStrategy[Mutation[dict[str, Any]]]:
    """A required key missing, or an unknown one added."""
    added = extra.map(lambda value: lambda document: {**document, EXTRA_FIELD: value})
    if not required:
        return added
    missing = st.sampled_from(list(required)).map(
        lambda gone: lambda document: {k: v for k, v in document.items() if k != gone}
    )
    return st.one_of(missing, added)


def objects(shape: ValueShape) -> SearchStrategy[dict[str, Any]]:
    required, optional = members(shape, json_values)
    usual = st.fixed_dictionaries(required, optional=optional)
    return mostly(usual, st.one_of(field_mutations(required, st.sampled_from(WRONG_TYPED)), wrong_type(shape)))


_BY_KIND = {
    "bool": lambda shape: st.booleans(),
    "int": integers,
    "float": floats,
    "str": strings,
    "list": arrays,
    "object": objects,
}


def json_values(shape: ValueShape) -> SearchStrategy[Any]:
    """Null first when the place was ever null (the simplest value), then its types, most frequent first."""
    typed = [_BY_KIND[kind](shape) for kind, _ in shape.kinds.most_common() if kind != "null"]
    usual = st.one_of(*([st.none()] if shape.nullable else []), *typed)
    return usual if {"list", "object"} & set(shape.kinds) else mostly(usual, wrong_type(shape))


# --- the parts of a request -----------------------------------------------------------------


def path_params(shape: EndpointShape) -> SearchStrategy[list[str]]:
    return st.tuples(*(strings(param) for param in shape.params)).map(list)


def query_pairs(shape: ValueShape) -> SearchStrategy[dict[str, str]]:
    required, optional = members(shape, strings)
    usual = st.fixed_dictionaries(required, optional=optional)
    return mostly(usual, field_mutations(required, st.sampled_from(string_edges(ValueShape()))))


def header_fields(shape: ValueShape) -> SearchStrategy[dict[str, str]]:
    required, optional = members(shape, header_values)
    return st.fixed_dictionaries(required, optional=optional)


def header_values(shape: ValueShape) -> SearchStrategy[str]:
    """Recorded values only: headers steer routing and auth, and a mangled one only tests the HTTP parser."""
    return st.sampled_from(simplest_first(set(shape.strings)) or [""])


def bodies(shape: EndpointShape) -> SearchStrategy[bytes]:
    if shape.grpc and (shape.grpc_input is not None or shape.body.count):
        from replaydiff.fuzz import grpc_messages  # here: it builds on this module's strategies

        if shape.grpc_input is not None:
            return grpc_messages.schema_bodies(shape.grpc_input, shape.body if shape.body.count else None)
        return grpc_messages.wire_bodies(shape.body)
    if shape.json_body:
        return json_values(shape.body).map(lambda document: json.dumps(document).encode())
    return st.sampled_from(simplest_first(set(shape.raw_bodies)) or [b""])


def assemble(
    shape: EndpointShape, params: list[str], query: dict[str, str], headers: dict[str, str], body: bytes
) -> Request:
    segments = list(shape.segments)
    for position, value in zip(shape.parameter_positions, params, strict=True):
        segments[position] = quote(value, safe="")
    exemplar = shape.exemplar
    return Request(
        method=shape.method,
        scheme=exemplar.scheme,
        host=exemplar.host,
        port=exemplar.port,
        path="/".join(segments),
        query=urlencode(list(query.items())),
        http_version=exemplar.http_version,
        headers=list(headers.items()),
        body=body,
    )


def generated_requests(shape: EndpointShape) -> SearchStrategy[Request]:
    return st.builds(
        partial(assemble, shape),
        path_params(shape),
        st.just({}) if shape.grpc else query_pairs(shape.query),  # a gRPC path has no query
        header_fields(shape.headers),
        bodies(shape),
    )


def requests(shape: EndpointShape) -> SearchStrategy[Request]:
    """Generated requests, and one time in `RARE_ONE_IN` a recorded one exactly as it was sent."""
    return mostly(generated_requests(shape), replaced_by(st.sampled_from(shape.recorded())))
