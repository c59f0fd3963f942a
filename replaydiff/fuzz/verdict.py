"""The property a fuzz session checks, decided without I/O: is the candidate's answer equivalent to the baseline's?

Equivalent means: no difference outside the learned noise and the user's
rules, and no 5xx or failure the baseline did not have. Noise is learned the
way the replay differ learns it (Diffy's rule), but per example instead of
per corpus: every location where baseline and baseline2 differed, for this
request or for any earlier request to the same endpoint, is noise there.

A single answer can still be unlucky — a field one call in ten carries, say,
that baseline2 happened not to show — so a suspect only becomes a divergence
when it reproduces on every resend (`NoiseJudge.confirmed`). A divergence that
reproduces is deterministic, which is also what hypothesis needs to shrink it.
"""

from __future__ import annotations

import json
from collections import defaultdict

from replaydiff.corpora.protobuf import ProtoSchema
from replaydiff.corpora import ReplayRecord, header_value
from replaydiff.diff.compare import compare, outcome
from replaydiff.diff.difference import Difference, Key
from replaydiff.diff.rules import Rules


def failed(record: ReplayRecord) -> bool:
    """A 5xx, or no answer at all: what the candidate must never do where the baseline did not."""
    return record.response is None or record.response.status >= 500


def answer_form(record: ReplayRecord) -> str:
    """How an answer looks, without its values: its media type, and a JSON object's keys."""
    response = record.response
    if response is None:
        return outcome(record)
    media = (header_value(response.headers, "content-type") or "no content-type").split(";")[0].strip()
    try:
        document = json.loads(response.body)
    except (ValueError, RecursionError):
        return media
    return f"{media}: {', '.join(sorted(document))}" if isinstance(document, dict) and document else media


def signature(differences: list[Difference], candidate: ReplayRecord) -> str:
    """Names a divergence so equal ones are one bug: the location, and for outcomes the two values.

    When the candidate failed, the baseline's status counts by class (a crash
    where the baseline said 400 or 404 is one bug) and the failing answer's
    form is added: two bugs that both turn a 4xx into a 500 — one a handled
    error in JSON, one a crash page — are two bugs, each shrunk on its own;
    values stay out so one bug's examples keep one name.
    """
    crashed = failed(candidate)
    parts = sorted(
        f"{d.kind} {_status_class(d.left) if crashed else d.left} → {d.right}"
        if d.kind in ("status", "error")
        else f"{d.kind} {d.location}"
        for d in differences
    )
    return "; ".join(parts) + (f" ({answer_form(candidate)})" if crashed else "")


def _status_class(status: str | None) -> str:
    """`4xx` for 404: a candidate crashing where the baseline rejected the request is one bug, whatever the 4xx."""
    return f"{status[0]}xx" if status and status.isdigit() else str(status)


class NoiseJudge:
    """Holds the noise learned so far, per endpoint, for one session."""

    def __init__(self, rules: Rules | None = None, schema: ProtoSchema | None = None) -> None:
        self._rules = rules or Rules()
        self._schema = schema
        self._noise: defaultdict[str, set[Key]] = defaultdict(set)

    def noise(self, endpoint: str) -> frozenset[Key]:
        return frozenset(self._noise[endpoint])

    def suspects(
        self, endpoint: str, baseline: ReplayRecord, baseline2: ReplayRecord, candidate: ReplayRecord
    ) -> list[Difference]:
        """Differences between baseline and candidate that are not noise; a candidate failure always counts."""
        rules = self._rules.for_endpoint(endpoint)
        self._noise[endpoint].update(d.key for d in compare(baseline, baseline2, rules, self._schema))
        differences = compare(baseline, candidate, rules, self._schema)
        if failed(candidate) and not failed(baseline):
            return differences or [Difference("error", "", outcome(baseline), outcome(candidate))]
        return [d for d in differences if d.key not in self._noise[endpoint]]

    def confirmed(
        self,
        endpoint: str,
        suspects: list[Difference],
        baseline: ReplayRecord,
        baseline2: ReplayRecord,
        candidate: ReplayRecord,
    ) -> list[Difference]:
        """The suspects that showed up again in this resend, as they look now."""
        again = {d.key: d for d in self.suspects(endpoint, baseline, baseline2, candidate)}
        return [again[s.key] for s in suspects if s.key in again]
