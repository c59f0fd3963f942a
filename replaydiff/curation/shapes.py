"""What a request or response looks like, without its values: the unit of coverage and of deduplication.

A JSON body's shape is the set of its paths with their value types (`$.items[*].id:number`), so two
orders with other ids have one shape, and an order that gained a field has another. Pure functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import orjson

from replaydiff.corpora import Exchange, Headers, header_value
from replaydiff.corpora.grpc import outcome_label
from replaydiff.diff.compare import DERIVED, HOP_BY_HOP

MAX_PATHS = 64
"""Paths kept of one body's shape: a huge document still has a bounded, stable shape."""
MAX_ARRAY_ITEMS = 16
"""Elements of an array whose shapes are merged: the first ones say what the array holds."""

VOLATILE_HEADERS = HOP_BY_HOP | DERIVED | frozenset(
    {"authorization", "cookie", "traceparent", "tracestate", "baggage", "x-request-id", "x-correlation-id",
     "user-agent", "if-none-match", "if-modified-since", "x-forwarded-for", "x-real-ip", "forwarded", "host"}
)  # fmt: skip
"""Headers that differ between otherwise identical requests (credentials are pseudonymized per client)."""


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def json_paths(document: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    """Every (path, value) of a JSON document, arrays as `[*]`; containers first, then what they hold."""
    yield path, document
    if isinstance(document, dict):
        for key, value in document.items():
            yield from json_paths(value, f"{path}.{key}")
    elif isinstance(document, list):
        for value in document[:MAX_ARRAY_ITEMS]:
            yield from json_paths(value, f"{path}[*]")


def parse_json(body: bytes) -> Any:
    """The body as JSON, or `...` (Ellipsis) when it is not JSON."""
    if not body or body[:1] not in b'{["-0123456789tfn':
        return ...
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return ...


def body_shape(body: bytes, content_type: str | None) -> str:
    """`{$:object,$.id:number,...}` for JSON, the media type for anything else, `empty` for no body."""
    if not body:
        return "empty"
    document = parse_json(body)
    if document is ...:
        return (content_type or "unknown").split(";")[0].strip().lower() or "unknown"
    paths = sorted({f"{path}:{_type_name(value)}" for path, value in json_paths(document)})
    more = ",…" if len(paths) > MAX_PATHS else ""
    return "{" + ",".join(paths[:MAX_PATHS]) + more + "}"


def query_keys(query: str) -> str:
    return ",".join(sorted({key for key, _ in parse_qsl(query, keep_blank_values=True)}))


def request_shape(exchange: Exchange) -> str:
    request = exchange.request
    shape = body_shape(request.body, header_value(request.headers, "content-type"))
    return f"query[{query_keys(request.query)}] body {shape}"


def response_shape(exchange: Exchange) -> str:
    response = exchange.response
    if response is None:
        return "no response"
    return body_shape(response.body, header_value(response.headers, "content-type"))


def status_class(exchange: Exchange) -> str:
    """`2xx`, `4xx`, …; a gRPC call's status name (`NOT_FOUND`), since its HTTP status is 200 whatever happened."""
    label = outcome_label(exchange.response)
    return f"{label[0]}xx" if label.isdigit() else label


def header_names(headers: Headers) -> list[str]:
    return sorted({name.lower() for name, _ in headers})


def scalar_values(exchange: Exchange) -> Iterator[tuple[str, str]]:
    """(location, value) of every query parameter and scalar JSON body field of the request.

    The candidates for categorical coverage: a coupon code, a sort order or a flag can each take a code path
    of its own, which no shape shows.
    """
    request = exchange.request
    for key, value in parse_qsl(request.query, keep_blank_values=True):
        yield f"?{key}", value
    document = parse_json(request.body)
    if document is ...:
        return
    for path, value in json_paths(document):
        if not isinstance(value, (dict, list)):
            yield path, orjson.dumps(value).decode()


def canonical_request(exchange: Exchange, endpoint: str) -> bytes:
    """What makes two requests the same for deduplication: endpoint template, sorted query, canonical JSON body
    (other bodies as they are), headers without volatile ones, and the status production answered (a request
    answered 200 and the same one answered 404 took different code paths)."""
    request = exchange.request
    document = parse_json(request.body)
    body = request.body if document is ... else orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    headers = sorted((name.lower(), value) for name, value in request.headers if name.lower() not in VOLATILE_HEADERS)
    status = outcome_label(exchange.response)
    return orjson.dumps(
        [endpoint, sorted(parse_qsl(request.query, keep_blank_values=True)), headers, status]
    ) + b"\n" + body
