"""Tonight's divergences against the entry's history: which are new, known, intermittent or accepted.

Pure: fingerprints in, statuses out. Only a *new* divergence fails a night
(of a kind the suite's `fail-on` lets fail): a known one failed the night it
appeared and stays visible every night after, an accepted one is an intended
change, and an intermittent one (present some nights, absent others since it
first appeared) is flakiness to look into rather than a regression of tonight's
build.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from replaydiff.diff.findings import DiffReport, DivergenceGroup

Status = Literal["new", "known", "intermittent", "accepted"]

WINDOW = 14
"""Past runs an entry's divergences are compared with: a divergence unseen for two weeks of nights is new again."""


@dataclass(frozen=True, slots=True)
class Verdict:
    group: DivergenceGroup
    status: Status
    fails: bool
    reason: str = ""
    """Why it was accepted."""

    def to_json(self) -> dict[str, object]:
        return {"fingerprint": self.group.fingerprint, "status": self.status, "fails": self.fails,
                "reason": self.reason, "count": self.group.count, "total": self.group.total}  # fmt: skip


def status(fingerprint: str, past: Sequence[Collection[str]], accepted: Collection[str]) -> Status:
    """`past`: the fingerprints of each earlier run of the entry, oldest first."""
    if fingerprint in accepted:
        return "accepted"
    seen = [fingerprint in run for run in past]
    if True not in seen:
        return "new"
    return "known" if all(seen[seen.index(True) :]) else "intermittent"


def verdicts(
    report: DiffReport,
    past: Sequence[Collection[str]],
    accepted: Mapping[str, str],
    fail_on: Collection[str] | None,
) -> list[Verdict]:
    """`accepted`: fingerprint → reason; `fail_on`: the kinds that may fail a run (`None`: all)."""
    found = []
    for group in report.divergences:
        kind_fails = fail_on is None or group.kind in fail_on
        state = status(group.fingerprint, past, accepted)
        found.append(Verdict(group, state, state == "new" and kind_fails, accepted.get(group.fingerprint, "")))
    return found


def gone(report: DiffReport, past: Sequence[Collection[str]]) -> list[str]:
    """Divergences of the last run that tonight's run no longer shows."""
    tonight = {group.fingerprint for group in report.divergences}
    return sorted(set(past[-1]) - tonight) if past else []
