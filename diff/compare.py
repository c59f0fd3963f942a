"""Compare what two targets answered to the same replayed request.

Pure: two `ReplayRecord`s in, a list of `Difference`s out. The same function
compares baseline with candidate (what we report) and baseline with
baseline2 (what we learn noise from), so both sides of the noise rule are
measured alike.

Locations are generalized (`$.items[*].price`, a lower-case header name) so
the same difference in different exchanges, or at different array positions,
counts as one place; each location appears at most once per comparison, its
first occurrence standing for the rest.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from deepdiff import DeepDiff
from deepdiff.helper import notpresent

from corpora import Headers, ReplayRecord, Response
from corpora.model import DivergenceKind
from diff.excerpt import body_excerpts, clip, json_value

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"})
"""Describe one connection, not the answer (RFC 9110 §7.6.1); `proxy-*` and names listed in `Connection` too."""

DERIVED = frozenset({"date", "content-length", "server", "etag", "last-modified", "age", "expires"})
"""Differ between any two servers or calls, or follow from the body, which is compared itself.

Other volatile headers (request ids, trace ids) are deliberately not listed:
the noise rule learns them from baseline vs baseline2.
"""

_DEEPDIFF_OPTIONS: dict[str, Any] = {
    "view": "tree",
    # JSON has one number type: 1 and 1.0 are the same value; `true` and 1 are not.
    "ignore_type_in_groups": [(int, float)],
    "ignore_type_subclasses": True,
    "ignore_nan_inequality": True,
    # Compare arrays position by position. The default matches hashable items
    # by hash, where True == 1, and would hide a bool/number type change.
    "zip_ordered_iterables": True,
    # Report added/removed keys one by one, never as one replaced object.
    "threshold_to_diff_deeper": 0,
}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NOT_JSON = object()

Key = tuple[DivergenceKind, str]
"""(kind, location): where two answers differ, the same in every exchange of an endpoint."""


@dataclass(frozen=True, slots=True)
class Difference:
    """One place where two answers differ; `None` as a value means absent on that side."""

    kind: DivergenceKind
    location: str
    left: str | None
    right: str | None

    @property
    def key(self) -> Key:
        return (self.kind, self.location)


def compare(left: ReplayRecord, right: ReplayRecord) -> list[Difference]:
    """Outcome first: a failed side or a different status makes everything else moot."""
    if left.response is None or right.response is None:
        left_outcome, right_outcome = outcome(left), outcome(right)
        return [] if left_outcome == right_outcome else [Difference("error", "", left_outcome, right_outcome)]
    if left.response.status != right.response.status:
        return [Difference("status", "", str(left.response.status), str(right.response.status))]
    return compare_headers(left.response.headers, right.response.headers) + compare_bodies(
        left.response, right.response
    )


def outcome(record: ReplayRecord) -> str:
    """The status a target answered, or how it failed (`timeout`, `reset`, …)."""
    if record.response is not None:
        return str(record.response.status)
    final = record.final
    return (final.error if final else None) or "no response"


def compare_headers(left: Headers, right: Headers) -> list[Difference]:
    left_values, right_values = _comparable_headers(left), _comparable_headers(right)
    return [
        Difference("header", name, _joined(left_values.get(name)), _joined(right_values.get(name)))
        for name in sorted(left_values.keys() | right_values.keys())
        if left_values.get(name) != right_values.get(name)
    ]


def _comparable_headers(headers: Headers) -> dict[str, list[str]]:
    """Header values by lower-case name, in order, without hop-by-hop and derived headers."""
    listed = {
        token.strip().lower() for name, value in headers if name.lower() == "connection" for token in value.split(",")
    }
    values: dict[str, list[str]] = {}
    for name, value in headers:
        key = name.lower()
        if key in HOP_BY_HOP or key in DERIVED or key in listed or key.startswith("proxy-"):
            continue
        values.setdefault(key, []).append(value)
    return values


def _joined(values: list[str] | None) -> str | None:
    return None if values is None else clip(", ".join(values))


def compare_bodies(left: Response, right: Response) -> list[Difference]:
    """JSON structurally when both bodies parse as JSON, whatever their content type says; else by content."""
    if left.body == right.body:
        return []
    left_doc, right_doc = _parse_json(left.body), _parse_json(right.body)
    if left_doc is _NOT_JSON or right_doc is _NOT_JSON:
        return [Difference("body", "", *body_excerpts(left.body, right.body))]
    return _unique(_json_differences(left_doc, right_doc, []))


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        return _NOT_JSON
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _json_differences(left: Any, right: Any, prefix: list[str | int]) -> Iterator[Difference]:
    """Descend through objects with the same keys into the members that differ, then let deepdiff compare.

    deepdiff builds an object per visited node (about 3 ms for a 20-item
    listing), and nearly every exchange differs somewhere (a timestamp), so
    skipping the members whose serializations are equal keeps a diff of
    100k exchanges in minutes rather than hours. Equal serialization implies
    equal JSON; anything else goes to deepdiff, which decides.
    """
    if isinstance(left, dict) and isinstance(right, dict) and left.keys() == right.keys():
        for key, value in left.items():
            if _serialized(value) != _serialized(right[key]):
                yield from _json_differences(value, right[key], [*prefix, key])
        return
    for levels in DeepDiff(left, right, **_DEEPDIFF_OPTIONS).values():
        for level in levels:
            yield Difference(
                "body",
                json_path([*prefix, *level.path(output_format="list")]),
                None if level.t1 is notpresent else json_value(level.t1),
                None if level.t2 is notpresent else json_value(level.t2),
            )


def _serialized(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def json_path(steps: Sequence[str | int]) -> str:
    """`$.items[*].price`: array positions generalized, odd keys quoted (`$["content-type"]`)."""
    parts = ["$"]
    for step in steps:
        if isinstance(step, int):
            parts.append("[*]")
        elif _IDENTIFIER.match(step):
            parts.append(f".{step}")
        else:
            parts.append(f"[{json.dumps(step, ensure_ascii=False)}]")
    return "".join(parts)


def _unique(differences: Iterator[Difference]) -> list[Difference]:
    """The first difference at each (kind, location)."""
    seen: dict[Key, Difference] = {}
    for difference in differences:
        seen.setdefault(difference.key, difference)
    return list(seen.values())
