"""Compare what two targets answered to the same replayed request.

Pure: two `ReplayRecord`s and the endpoint's rules in, a list of
`Difference`s out. The same function compares baseline with candidate (what
we report) and baseline with baseline2 (what we learn noise from), so both
sides of the noise rule are measured alike, rules included.

Locations are generalized (`$.items[*].price`, a lower-case header name) so
the same difference in different exchanges, or at different array positions,
counts as one place; each location appears at most once per comparison, its
first occurrence standing for the rest.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from replaydiff.corpora import HOP_BY_HOP, Headers, ReplayRecord, Response
from replaydiff.corpora.endpoints import is_grpc_endpoint
from replaydiff.corpora.grpc import grpc_status, is_grpc, status_name
from replaydiff.corpora.protobuf import GrpcMethod, ProtoSchema
from replaydiff.diff.behaviour import compare_behaviour
from replaydiff.diff.difference import Difference
from replaydiff.diff.excerpt import body_excerpts, clip
from replaydiff.diff.messages import compare_messages
from replaydiff.diff.rules import NO_RULES, EndpointRules, ValueRule
from replaydiff.diff.structure import json_changes

"""Describe one connection, not the answer (RFC 9110 §7.6.1); `proxy-*` and names listed in `Connection` too."""

DERIVED = frozenset({"date", "content-length", "server", "etag", "last-modified", "age", "expires"})
"""Differ between any two servers or calls, or follow from the body, which is compared itself.

Other volatile headers (request ids, trace ids) are deliberately not listed:
the noise rule learns them from baseline vs baseline2.
"""

_NOT_JSON = object()

def compare_answers(
    left: ReplayRecord, right: ReplayRecord, rules: EndpointRules = NO_RULES, schema: ProtoSchema | None = None
) -> list[Difference]:
    """Outcome first: a failed side or a different status makes everything else moot."""
    if left.response is None or right.response is None:
        left_outcome, right_outcome = outcome(left), outcome(right)
        return [] if left_outcome == right_outcome else [Difference("error", "", left_outcome, right_outcome)]
    if left.response.status != right.response.status:
        return [Difference("status", "", str(left.response.status), str(right.response.status))]
    if is_call(left.response) or is_call(right.response):
        return compare_calls(left, right, rules, schema)
    return compare_headers(left.response.headers, right.response.headers, rules.headers) + compare_bodies(
        left.response, right.response, rules.paths
    )


GRPC_STATUS = "grpc-status"
"""The location of a gRPC status divergence: its values are code names (`NOT_FOUND → INTERNAL`)."""


def is_call(response: Response) -> bool:
    return is_grpc(response.headers) or grpc_status(response) is not None


def compare_calls(
    left: ReplayRecord, right: ReplayRecord, rules: EndpointRules = NO_RULES, schema: ProtoSchema | None = None
) -> list[Difference]:
    """Two answers to one gRPC call: its `grpc-status` is its outcome, as an HTTP status is a request's; then its
    headers and trailers (one set of names, so a rule's `header` covers both), then its messages by field path."""
    assert left.response is not None and right.response is not None
    left_status, right_status = grpc_status(left.response), grpc_status(right.response)
    if left_status != right_status:
        return [Difference("status", GRPC_STATUS, status_name(left_status), status_name(right_status))]
    metadata = compare_headers(_metadata(left.response), _metadata(right.response), rules.headers)
    if left.response.body_digest is not None or right.response.body_digest is not None:
        return metadata + _compare_cut_bodies(left.response, right.response)  # above the cap: no whole message
    return metadata + compare_messages(left.response, right.response, grpc_method(left, schema), rules.paths)


def grpc_method(record: ReplayRecord, schema: ProtoSchema | None) -> GrpcMethod | None:
    """The schema's method for a record's endpoint (`grpc package.Service/Method`), if it has one."""
    if schema is None or not is_grpc_endpoint(record.endpoint):
        return None
    return schema.method(record.endpoint.partition(" ")[2])


def _metadata(response: Response) -> Headers:
    return [(name, value) for name, value in response.headers + response.trailers if name.lower() != GRPC_STATUS]


def compare(
    left: ReplayRecord, right: ReplayRecord, rules: EndpointRules = NO_RULES, schema: ProtoSchema | None = None
) -> list[Difference]:
    """What the targets answered, then how they got there (attempts, upstream calls, retries).

    When the outcome already differs, different upstream calls are its consequence (a
    candidate that fails early calls nothing), so only a difference in retries is added.
    `schema` decodes gRPC messages by field name; without it they are read by wire format.
    """
    answers = compare_answers(left, right, rules, schema)
    behaviour = compare_behaviour(left, right)
    if any(d.kind in ("status", "error") for d in answers):
        behaviour = [d for d in behaviour if d.kind != "upstream"]
    return answers + behaviour


def outcome(record: ReplayRecord) -> str:
    """The status a target answered, or how it failed (`timeout`, `reset`, …)."""
    if record.response is not None:
        return str(record.response.status)
    final = record.final
    return (final.error if final else None) or "no response"


MAX_HEADER_LOCATIONS = 50
"""Differing header names reported one by one on one exchange; more are one divergence at `ALL_HEADERS`.

Real answers differ in a handful of headers, each worth its own place (and its own noise count); a target
sending thousands of distinct headers would otherwise make thousands of divergences per exchange."""

ALL_HEADERS = "*"


def compare_headers(left: Headers, right: Headers, rules: dict[str, ValueRule] | None = None) -> list[Difference]:
    """Linear in the number of headers."""
    if left == right:
        return []
    left_values, right_values = _comparable_headers(left, rules), _comparable_headers(right, rules)
    differing = [
        name
        for name in sorted(left_values.keys() | right_values.keys())
        if left_values.get(name) != right_values.get(name)
    ]
    if len(differing) > MAX_HEADER_LOCATIONS:
        return [_many_headers(differing, left_values, right_values)]
    return [
        Difference("header", name, _joined(left_values.get(name)), _joined(right_values.get(name)))
        for name in differing
    ]


def _many_headers(differing: list[str], left: dict[str, list[str]], right: dict[str, list[str]]) -> Difference:
    """One divergence with counts: how many names differ, how many each side has that the other lacks."""
    only_left = sum(1 for name in differing if name not in right)
    only_right = sum(1 for name in differing if name not in left)
    changed = len(differing) - only_left - only_right
    examples = ", ".join(differing[:5])
    summary = f"{len(differing)} headers differ ({changed} changed, {only_left} only here; e.g. {examples})"
    other = f"{len(differing)} headers differ ({changed} changed, {only_right} only here; e.g. {examples})"
    return Difference("header", ALL_HEADERS, clip(summary), clip(other))


def _comparable_headers(headers: Headers, rules: dict[str, ValueRule] | None) -> dict[str, list[str]]:
    """Header values by lower-case name, in order, without hop-by-hop, derived and ignored headers, normalized."""
    listed = {
        token.strip().lower() for name, value in headers if name.lower() == "connection" for token in value.split(",")
    }
    values: dict[str, list[str]] = {}
    for name, value in headers:
        key = name.lower()
        if key in HOP_BY_HOP or key in DERIVED or key in listed or key.startswith("proxy-"):
            continue
        rule = rules.get(key) if rules else None
        if rule is not None and rule.ignore:
            continue
        values.setdefault(key, []).append(rule.normalized(value) if rule is not None else value)
    return values


def _joined(values: list[str] | None) -> str | None:
    return None if values is None else clip(", ".join(values))


def compare_bodies(left: Response, right: Response, rules: dict[str, ValueRule] | None = None) -> list[Difference]:
    """JSON structurally when both bodies parse as JSON, whatever their content type says; else by content.

    Equal bytes are equal answers whatever the rules (rules only relax), so
    identical pairs never pay for parsing.
    """
    if left.body_digest is not None or right.body_digest is not None:
        return _compare_cut_bodies(left, right)
    if left.body == right.body:
        return []
    left_doc, right_doc = _parse_json(left.body), _parse_json(right.body)
    if left_doc is _NOT_JSON or right_doc is _NOT_JSON:
        return [Difference("body", "", *body_excerpts(left.body, right.body))]
    return [Difference("body", c.path, c.left, c.right) for c in json_changes(left_doc, right_doc, rules or {})]


def _compare_cut_bodies(left: Response, right: Response) -> list[Difference]:
    """A body above the cap is its size and digest plus a prefix: equal when the digests are, else shown as
    the sizes and digests with the prefixes' first difference."""
    if _digest(left) == _digest(right):
        return []
    left_excerpt, right_excerpt = body_excerpts(left.body, right.body)
    return [Difference("body", "", clip(f"{_size(left)}; {left_excerpt}"), clip(f"{_size(right)}; {right_excerpt}"))]


def _digest(response: Response) -> str:
    return response.body_digest or f"sha256:{hashlib.sha256(response.body).hexdigest()}"


def _size(response: Response) -> str:
    size = response.body_size if response.body_size is not None else len(response.body)
    return f"<{size} bytes, {_digest(response)[:19]}>"


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        return _NOT_JSON
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _NOT_JSON
