"""Tonight's divergences against the entry's history: which are new, known, intermittent or accepted, which fail
the night, and since when each has been showing.

Pure: fingerprints in, judgements out. By default a night fails while any
divergence that is neither fixed nor accepted persists, new or known (of a kind
the suite's `fail-on` lets fail): a red build does not turn green by itself.
An intermittent one (present some nights, absent others since it first
appeared) is shown, as flakiness to look into, but does not fail unless asked
(`--fail-on new,known,intermittent`); `--fail-on new` fails only the night a
divergence appears.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from replaydiff.diff.findings import DiffReport, DivergenceGroup

Status = Literal["new", "known", "intermittent", "accepted"]
FAILABLE: tuple[str, ...] = tuple(status for status in get_args(Status) if status != "accepted")
FAIL_BY_DEFAULT = frozenset({"new", "known"})
"""A divergence nobody fixed or accepted fails every night it persists."""

WINDOW = 14
"""Past runs an entry's divergences are compared with: a divergence unseen for two weeks of nights is new again."""


@dataclass(frozen=True, slots=True)
class PastRun:
    """One earlier finished run of an entry: when it started and the divergences it showed."""

    started: str
    fingerprints: frozenset[str]


@dataclass(frozen=True, slots=True)
class JudgedDivergence:
    """A divergence of tonight's run with the night's judgement of it."""

    group: DivergenceGroup
    status: Status
    fails: bool
    reason: str = ""
    """Why it was accepted."""
    since: str = ""
    """When the first run of the unbroken series of runs that showed it, up to tonight, started."""
    nights: int = 1
    """Runs in that series, tonight's included."""

    def to_json(self) -> dict[str, object]:
        return {"fingerprint": self.group.fingerprint, "status": self.status, "fails": self.fails,
                "reason": self.reason, "count": self.group.count, "total": self.group.total,
                "since": self.since, "nights": self.nights}  # fmt: skip


def status(fingerprint: str, past: Sequence[Collection[str]], accepted: Collection[str]) -> Status:
    """`past`: the fingerprints of each earlier run of the entry in the window, oldest first."""
    if fingerprint in accepted:
        return "accepted"
    seen = [fingerprint in run for run in past]
    if True not in seen:
        return "new"
    return "known" if all(seen[seen.index(True) :]) else "intermittent"


def showing_since(fingerprint: str, past: Sequence[PastRun], tonight: str) -> tuple[str, int]:
    """(start of the first run, runs) of the unbroken series of runs up to tonight that showed the divergence."""
    since, nights = tonight, 1
    for run in reversed(past):
        if fingerprint not in run.fingerprints:
            break
        since, nights = run.started, nights + 1
    return since, nights


def parse_fail_statuses(text: str) -> frozenset[str]:
    """`--fail-on new,known`: which statuses fail a night; a one-line error naming the bad one."""
    chosen = frozenset(part.strip().lower() for part in text.split(",") if part.strip())
    if unknown := sorted(chosen - set(FAILABLE)):
        raise ValueError(
            f"{', '.join(unknown)} is not a status that can fail a night; use some of {', '.join(FAILABLE)}"
        )
    if not chosen:
        raise ValueError(f"name at least one of {', '.join(FAILABLE)}")
    return chosen


def judge_divergences(
    report: DiffReport,
    past: Sequence[PastRun],
    accepted: Mapping[str, str],
    *,
    tonight: str,
    fail_kinds: Collection[str] | None = None,
    fail_statuses: Collection[str] = FAIL_BY_DEFAULT,
) -> list[JudgedDivergence]:
    """`past`: the entry's earlier finished runs, oldest first (the last `WINDOW` decide the statuses, all of them
    how long a divergence has been showing); `accepted`: fingerprint → reason; `fail_kinds`: the kinds that may
    fail a run (`None`: all); `fail_statuses`: the statuses that do."""
    window = [run.fingerprints for run in past[-WINDOW:]]
    found = []
    for group in report.divergences:
        state = status(group.fingerprint, window, accepted)
        fails = state in fail_statuses and (fail_kinds is None or group.kind in fail_kinds)
        since, nights = showing_since(group.fingerprint, past, tonight)
        found.append(JudgedDivergence(group, state, fails, accepted.get(group.fingerprint, ""), since, nights))
    return found


def gone(report: DiffReport, past: Sequence[PastRun]) -> list[str]:
    """Divergences of the last run that tonight's run no longer shows."""
    tonight = {group.fingerprint for group in report.divergences}
    return sorted(set(past[-1].fingerprints) - tonight) if past else []
