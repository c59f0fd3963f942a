"""The shape every stored record must have, checked where records enter: when a file is read.

A record of the wrong shape (a path that is a number, a record that is a JSON
array) is a damaged or hand-edited input, and the user needs the file, the line
and the field in words, not a traceback from deep in the replayer. The shapes
are small declarative tables checked by one walker: a JSON-Schema library was
weighed, but this runs on every record of every read, where a compiled schema
costs several times more, and its messages name types by JSON-Schema words
rather than the ones below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Nullable:
    """The value may also be null."""

    shape: Any


@dataclass(frozen=True, slots=True)
class ListOf:
    shape: Any


PAIR = "pair"
"""A header: a list of exactly two strings."""

BODY = Nullable({"?text": str, "?b64": str})

REQUEST: dict[str, Any] = {
    "method": str,
    "scheme": str,
    "host": str,
    "port": int,
    "path": str,
    "?query": str,
    "?http_version": str,
    "?headers": ListOf(PAIR),
    "?body": BODY,
}

RESPONSE: dict[str, Any] = {
    "status": int,
    "?reason": str,
    "?http_version": str,
    "?headers": ListOf(PAIR),
    "?body": BODY,
    "?original_encoding": Nullable(str),
    "?body_size": Nullable(int),
    "?body_digest": Nullable(str),
}

UPSTREAM_CALL: dict[str, Any] = {
    "dependency": str,
    "method": str,
    "path": str,
    "status": Nullable(int),
    "?error": Nullable(str),
    "?start_us": int,
    "?duration_us": int,
    "?trace_id": str,
    "?fault": Nullable(str),
    "?approximate": bool,
    "?query": str,
    "?request": REQUEST,
    "?answer": RESPONSE,
    "?mock": Nullable(str),
    "?mock_recorded": Nullable(int),
    "?mock_changes": ListOf(str),
    "?mock_by_time": bool,
}

EXCHANGE: dict[str, Any] = {
    "id": str,
    "session": str,
    "start_us": int,
    "?duration_us": int,
    "request": REQUEST,
    "?response": Nullable(RESPONSE),
    "?tags": Nullable({"*": str}),
    "?upstream": ListOf(UPSTREAM_CALL),
}

ATTEMPT: dict[str, Any] = {
    "sent_us": int,
    "ttfb_us": Nullable(int),
    "duration_us": int,
    "status": Nullable(int),
    "?error": Nullable(str),
    "?error_detail": Nullable(str),
    "?span_id": str,
}

REPLAY_RECORD: dict[str, Any] = {
    "exchange_id": str,
    "target": str,
    "endpoint": str,
    "?attempts": ListOf(ATTEMPT),
    "?response": Nullable(RESPONSE),
    "?upstream": ListOf(UPSTREAM_CALL),
    "?schedule_lag_us": int,
    "?trace_id": str,
}


def conforms(shape: Any) -> Callable[[Any], bool]:
    """A fast yes/no for `shape`, built once per shape: every record of every read passes through it, and
    only a record that does not conform pays for `problem`'s field-by-field message. Header pairs are only
    checked to be in a list: decoding turns each into text and fails on a pair of the wrong length, which
    `problem` then names."""
    key = id(shape)
    if key not in _COMPILED:
        _COMPILED[key] = (_compiled(shape), shape)  # the shape is kept so its id stays its own
    return _COMPILED[key][0]


_COMPILED: dict[int, tuple[Callable[[Any], bool], Any]] = {}
_MISSING = object()


def _compiled(shape: Any) -> Callable[[Any], bool]:
    if isinstance(shape, Nullable):
        inner = _compiled(shape.shape)
        return lambda value: value is None or inner(value)
    if isinstance(shape, ListOf):
        if shape.shape == PAIR:
            return lambda value: type(value) is list
        item = _compiled(shape.shape)
        return lambda value: type(value) is list and all(map(item, value))
    if isinstance(shape, dict):
        return _compiled_object(shape)
    kind = shape
    return lambda value: type(value) is kind


def _compiled_object(shape: dict[str, Any]) -> Callable[[Any], bool]:
    required = [(key, _compiled(inner)) for key, inner in shape.items() if not key.startswith(("?", "*"))]
    optional = [(key[1:], _compiled(inner)) for key, inner in shape.items() if key.startswith("?")]
    every = _compiled(shape["*"]) if "*" in shape else None

    def check(value: Any) -> bool:
        if type(value) is not dict:
            return False
        for name, fits in required:
            item = value.get(name, _MISSING)
            if item is _MISSING or not fits(item):
                return False
        for name, fits in optional:
            item = value.get(name, _MISSING)
            if item is not _MISSING and not fits(item):
                return False
        return every is None or all(map(every, value.values()))

    return check


def problem(value: Any, shape: Any, where: str = "") -> tuple[str, str] | None:
    """(field path, what is wrong) for the first place `value` departs from `shape`, or None if it fits."""
    if isinstance(shape, Nullable):
        return None if value is None else problem(value, shape.shape, where)
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return where, f"is {_described(value)}, expected an object"
        for key, inner in shape.items():
            if key == "*":
                for name, item in value.items():
                    if found := problem(item, inner, _joined(where, name)):
                        return found
                continue
            name = key.removeprefix("?")
            if name not in value:
                if name == key:
                    return _joined(where, name), "is missing"
                continue
            if found := problem(value[name], inner, _joined(where, name)):
                return found
        return None
    if isinstance(shape, ListOf):
        if not isinstance(value, list):
            return where, f"is {_described(value)}, expected a list"
        for index, item in enumerate(value):
            if found := problem(item, shape.shape, f"{where}[{index}]"):
                return found
        return None
    if shape == PAIR:
        if isinstance(value, list) and len(value) == 2 and all(isinstance(part, str) for part in value):
            return None
        return where, f"is {_described(value)}, expected a [name, value] pair of text"
    if _fits(value, shape):
        return None
    return where, f"is {_described(value)}, expected {_NAMES[shape]}"


def _fits(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _joined(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


_NAMES: dict[type, str] = {
    str: "text",
    int: "a whole number",
    bool: "true or false",
    float: "a number",
    list: "a list",
    dict: "an object",
}


def _described(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
