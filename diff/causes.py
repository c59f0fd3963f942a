"""Divergences grouped by cause: the report's unit is a `Finding`, not a (endpoint, kind, location).

One change to an application shows up as many divergences: a redesigned
document as one per key it lost or gained, on every endpoint that serves it;
a new redirect as one status divergence per endpoint. The rules, in order:

- status and error divergences: one finding per old → new outcome (`200 → 302 on 4 endpoints`);
- body divergences: each endpoint's set of changed JSON locations is its signature (removed, added,
  retyped, changed, per location); endpoints whose signatures overlap by at least `SAME_CAUSE_OVERLAP`
  (Jaccard) are one finding, titled by what the document lost, gained and retyped;
- header divergences: one finding per change (added / removed / changed) and set of endpoints, naming
  every header that moved that way there;
- latency, retry and upstream divergences: one finding each, per endpoint, as they were.

Findings rank by severity (new 5xx and errors, status, removed or retyped keys, changed values, added keys,
retries and upstream calls, headers, latency), then by the exchanges they cover. Pure: divergence groups
in, findings out; member fingerprints are kept unchanged so accepted divergences and nightly history
still match.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace

from replaydiff.corpora.grpc import SERVER_ERRORS
from replaydiff.corpora.model import DivergenceKind
from replaydiff.diff.behaviour import MOCK_LOCATIONS
from replaydiff.diff.findings import DivergenceGroup, Example, Finding, Severity
from replaydiff.diff.messages import WIRE_NOTE

WIRE_MARK = " (gRPC wire format, no schema)"
"""Ends the title of a finding on gRPC messages read without a schema (fields by number, not by name)."""

SAME_CAUSE_OVERLAP = 0.5
"""Jaccard overlap of two endpoints' changed locations above which one document change explains both."""
MAX_EXAMPLES = 3
"""Examples per finding, from distinct endpoints where there are several."""
EXAMPLE_CHARS = 2000
EXAMPLE_LINES = 60
"""An example answer is cut to this, whatever the headers or body it had: a finding's size is bounded."""

_RANKS: dict[str, tuple[int, Severity]] = {
    "error": (0, "critical"),
    "5xx": (0, "critical"),
    "status": (1, "high"),
    "removed": (2, "high"),
    "retyped": (2, "high"),
    "changed": (3, "medium"),
    "added": (4, "medium"),
    "retry": (5, "medium"),
    "upstream": (5, "medium"),
    "header": (6, "low"),
    "latency": (7, "low"),
}
_JSON_TYPES = {'"': "string", "{": "object", "[": "array", "t": "boolean", "f": "boolean", "n": "null"}


def find_causes(groups: Iterable[DivergenceGroup]) -> list[Finding]:
    """Every group lands in exactly one finding; the findings come ranked, most severe and widest first."""
    by_kind: defaultdict[str, list[DivergenceGroup]] = defaultdict(list)
    for group in groups:
        by_kind[group.kind].append(group)
    findings = [
        *_outcomes(by_kind.pop("status", []), "status"),
        *_outcomes(by_kind.pop("error", []), "error"),
        *_documents(by_kind.pop("body", [])),
        *_headers(by_kind.pop("header", [])),
    ]
    for kind_groups in by_kind.values():  # latency, retry, upstream: one finding per divergence
        findings += [_single(group) for group in kind_groups]
    return ranked(findings)


def ranked(findings: Iterable[Finding]) -> list[Finding]:
    """Most severe first, then the widest."""
    return sorted(findings, key=lambda f: (f.rank, -f.exchanges, f.title))


def change_class(baseline: str | None, candidate: str | None) -> str:
    """`removed`, `added`, `retyped` or `changed`, from the two short JSON texts of a location (`None`: absent)."""
    if candidate is None:
        return "removed"
    if baseline is None:
        return "added"
    return "changed" if json_type(baseline) == json_type(candidate) else "retyped"


def json_type(text: str) -> str:
    """The JSON type of a value's (possibly clipped) text: its first character tells."""
    return _JSON_TYPES.get(text[:1], "number")


def _outcomes(groups: list[DivergenceGroup], kind: DivergenceKind) -> list[Finding]:
    """One finding per old → new outcome, over every endpoint that moved that way."""
    moves: defaultdict[tuple[str, str], list[DivergenceGroup]] = defaultdict(list)
    for group in groups:
        example = group.examples[0].divergence
        moves[str(example.baseline), str(example.candidate)].append(group)
    findings = []
    for (old, new), members in moves.items():
        new_5xx = _server_error(new) and not _server_error(old)
        rank_key = "error" if kind == "error" else ("5xx" if new_5xx else "status")
        what = f"{kind} {old} → {new}" if kind == "status" else f"{old} answer became {new}"
        findings.append(_finding(f"{what} {_on(members)}", kind, rank_key, members))
    return findings


def _server_error(outcome: str) -> bool:
    """An HTTP 5xx, or a gRPC code a server's fault produces (`INTERNAL`, `UNAVAILABLE`, …)."""
    return outcome.startswith("5") or outcome in SERVER_ERRORS


def _documents(groups: list[DivergenceGroup]) -> list[Finding]:
    """Endpoints whose documents changed alike become one finding."""
    by_endpoint: dict[str, list[DivergenceGroup]] = {}
    for group in groups:
        by_endpoint.setdefault(group.endpoint, []).append(group)
    signatures = {endpoint: frozenset(_body_change(g) for g in members) for endpoint, members in by_endpoint.items()}
    clusters: list[tuple[frozenset[tuple[str, str]], list[str]]] = []
    for endpoint in sorted(signatures, key=lambda e: (-len(signatures[e]), e)):
        signature = signatures[endpoint]
        for seed, endpoints in clusters:
            if len(seed & signature) / len(seed | signature) >= SAME_CAUSE_OVERLAP:
                endpoints.append(endpoint)
                break
        else:
            clusters.append((signature, [endpoint]))
    findings = []
    for _, endpoints in clusters:
        members = [group for endpoint in endpoints for group in by_endpoint[endpoint]]
        classes: defaultdict[str, list[str]] = defaultdict(list)
        for change, location in sorted({_body_change(g) for g in members}, key=lambda c: c[1]):
            classes[change].append(location)
        worst = min(classes, key=lambda c: _RANKS[c][0])
        title = _document_title(classes, members)
        if any(group.detail == WIRE_NOTE for group in members):
            title += WIRE_MARK
        findings.append(_finding(title, "body", worst, members, dict(classes)))
    return findings


def _body_change(group: DivergenceGroup) -> tuple[str, str]:
    if not group.location:
        return "changed", ""  # a body that is not JSON: excerpts of text, not typed values
    example = group.examples[0].divergence
    return change_class(example.baseline, example.candidate), group.location


def _document_title(classes: dict[str, list[str]], members: list[DivergenceGroup]) -> str:
    on = _on(members)
    if sum(map(len, classes.values())) == 1:
        ((change, (location,)),) = classes.items()
        example = members[0].examples[0].divergence
        where = f"`{location}`" if location else "body"
        if change == "retyped":
            types = f"{json_type(str(example.baseline))} → {json_type(str(example.candidate))}"
            return f"{where} changed type ({types}) {on}"
        return f"{where} {change} {on}" if location else f"body changed {on}"
    parts = []
    for change, verb in (("removed", "lost"), ("added", "gained"), ("retyped", "retyped"), ("changed", "changed")):
        if locations := classes.get(change):
            noun = "key" if change in ("removed", "added") else "value"
            parts.append(f"{verb} {len(locations)} {noun}{'' if len(locations) == 1 else 's'}")
    listed = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
    return f"JSON {listed} {on}"


def _headers(groups: list[DivergenceGroup]) -> list[Finding]:
    """One finding per change (added, removed, changed) and set of endpoints: headers that moved together,
    such as a middleware's `cache-control` and `referrer-policy`, are one cause."""
    changes: defaultdict[tuple[str, str], list[DivergenceGroup]] = defaultdict(list)
    for group in groups:
        example = group.examples[0].divergence
        change = change_class(example.baseline, example.candidate).replace("retyped", "changed")
        changes[group.location, change].append(group)
    together: defaultdict[tuple[str, frozenset[str]], list[str]] = defaultdict(list)
    for (name, change), members in changes.items():
        together[change, frozenset(g.endpoint for g in members)].append(name)
    findings = []
    for (change, _), names in together.items():
        members = [group for name in names for group in changes[name, change]]
        title = f"header{'s' if len(names) > 1 else ''} {', '.join(names)} {change} {_on(members)}"
        findings.append(_finding(title, "header", "header", members, {change: names}))
    return findings


def _single(group: DivergenceGroup) -> Finding:
    example = group.examples[0].divergence
    if group.kind == "latency":
        title = f"latency {group.location} {example.baseline} → {example.candidate} on {group.endpoint}"
    elif group.kind == "retry":
        title = f"retries to {group.location or 'the service'} differ on {group.endpoint}"
    else:
        dependency, _, what = group.location.partition(" ")
        if what in MOCK_LOCATIONS:  # under a mock: `unexpected call to inventory on POST /api/checkout`
            title = f"{what} to {dependency} on {group.endpoint}"
        else:
            title = f"{group.kind} calls to {group.location or 'dependencies'} differ on {group.endpoint}"
    return _finding(title, group.kind, group.kind, [group])


def _on(members: list[DivergenceGroup]) -> str:
    endpoints = list(dict.fromkeys(group.endpoint for group in members))
    return f"on {endpoints[0]}" if len(endpoints) == 1 else f"on {len(endpoints)} endpoints"


def _finding(
    title: str,
    kind: DivergenceKind,
    rank_key: str,
    members: list[DivergenceGroup],
    changes: dict[str, list[str]] | None = None,
) -> Finding:
    rank, severity = _RANKS[rank_key]
    exchanges: dict[str, int] = {}
    totals: dict[str, int] = {}
    for group in members:  # an exchange may diverge at several member locations: count it once per endpoint
        exchanges[group.endpoint] = max(exchanges.get(group.endpoint, 0), group.count)
        totals[group.endpoint] = max(totals.get(group.endpoint, 0), group.total)
    return Finding(
        title=title,
        kind=kind,
        severity=severity,
        rank=rank,
        members=members,
        exchanges=sum(exchanges.values()),
        total=sum(totals.values()),
        changes=changes or {},
        examples=_examples(members),
    )


def _examples(members: list[DivergenceGroup]) -> list[Example]:
    """The widest member of each endpoint, first example each, answers cut to a bounded excerpt."""
    widest: dict[str, DivergenceGroup] = {}
    for group in members:
        if group.endpoint not in widest or group.count > widest[group.endpoint].count:
            widest[group.endpoint] = group
    chosen = sorted(widest.values(), key=lambda g: -g.count)[:MAX_EXAMPLES]
    return [bounded(group.examples[0]) for group in chosen]


def bounded(example: Example) -> Example:
    return replace(example, baseline_body=cut(example.baseline_body), candidate_body=cut(example.candidate_body))


def cut(text: str, chars: int = EXAMPLE_CHARS, lines: int = EXAMPLE_LINES) -> str:
    """At most `lines` lines and `chars` characters, saying how much was left out."""
    if len(text) <= chars and text.count("\n") < lines:
        return text
    kept = "\n".join(text[:chars].split("\n")[:lines])
    return f"{kept}\n… ({len(text) - len(kept):,} more characters)"
