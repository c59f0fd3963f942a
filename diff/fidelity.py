"""How faithfully the baselines reproduced the recording, and whether a replay tested anything at all.

A diff compares baseline with candidate. When both answer 401 because the
recorded credentials were masked, they agree, and the diff alone would say
SAME although nothing of the candidate ran. So each target's answer is also
compared with what production answered when the traffic was recorded:

- *fidelity* of an endpoint: the share of its exchanges whose baseline status
  equals the recorded one (what every report shows, per endpoint);
- a *failure where the recording succeeded*: recorded 2xx/3xx, replayed
  401/403 (credentials), 404 (ids the sandbox lacks), 5xx, or no answer;
- an endpoint is *untested* when such failures are at least `UNTESTED_SHARE`
  of its exchanges on both baselines; any untested endpoint makes a run
  without failing divergences INCONCLUSIVE (exit 3), never SAME.

A gRPC call is judged by its `grpc-status` rather than its HTTP status (always 200): recorded OK, replayed
UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND or a server fault (`SERVER_ERRORS`) fails as 401, 403, 404 or 5xx
would, and reports name the codes.

Pure: the analysis feeds `FidelityTally` the records of each exchange (which
carry the recorded status, so a results file is judged without its corpus).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from replaydiff.corpora import ReplayRecord
from replaydiff.corpora.grpc import SERVER_ERRORS, grpc_status, status_name

UNTESTED_SHARE = 0.5
"""An endpoint whose baselines failed where the recording succeeded on at least this share of its exchanges
was not tested: its 'no divergence' says nothing about the candidate."""

BASELINES = ("baseline", "baseline2")

_REASONS = {
    "401": "the recorded credentials were masked or pseudonymized; see --header, --identities, --jwt-key",
    "403": "the recorded credentials were masked or pseudonymized; see --header, --identities, --jwt-key",
    "404": "the ids the recording found are missing on the targets: seed the sandbox with production-like data",
    "5xx": "the baselines failed: look at their logs and dependencies",
    "error": "the baselines gave no answer: check the target URLs, --timeout and the services' health",
}


_GRPC_FAILURES = {"UNAUTHENTICATED": "401", "PERMISSION_DENIED": "403", "NOT_FOUND": "404"}


def failure(recorded: int | None, record: ReplayRecord | None) -> str | None:
    """How this target failed where the recording succeeded (`401`, `403`, `404`, `5xx`, `error`), else None."""
    if recorded is None or recorded >= 400 or record is None:
        return None
    if record.response is None:
        return "error"
    status = record.response.status
    if status in (401, 403, 404):
        return str(status)
    return "5xx" if status >= 500 else None


def grpc_failure(recorded: int | None, record: ReplayRecord | None) -> str | None:
    """The same for a gRPC call, by its grpc-status: recorded OK, replayed a client or server failure."""
    if recorded != 0 or record is None:
        return None
    if record.response is None:
        return "error"
    if record.response.status != 200:
        return failure(200, record)
    name = status_name(grpc_status(record.response))
    return _GRPC_FAILURES.get(name) or ("5xx" if name in SERVER_ERRORS else None)


@dataclass
class _EndpointFidelity:
    exchanges: int = 0
    """Exchanges with a recorded status and a baseline record."""
    matching: int = 0
    """… whose baseline answered the recorded status."""
    failed: int = 0
    """… where every baseline failed although the recording succeeded."""
    causes: Counter[str] = field(default_factory=Counter)
    recorded: Counter[str] = field(default_factory=Counter)
    """Recorded statuses (or gRPC status names) of the failed exchanges, for the reason in words."""
    answered: Counter[str] = field(default_factory=Counter)
    """What the first baseline answered on them, in the same words: `401`, `5xx`, `UNAUTHENTICATED`."""
    candidate_failed: int = 0
    """Of the failed exchanges, those the candidate failed alike."""
    carried: int = 0
    """Values correlation carried into the baseline's requests (ids, ETags, page tokens it answered earlier)."""
    not_found: int = 0
    """Values the recording learned from an answer that the baseline never answered: a broken session."""


@dataclass(frozen=True, slots=True)
class EndpointFidelity:
    endpoint: str
    exchanges: int
    matching: int
    failed: int
    untested: bool
    finding: str = ""
    """What the baselines did: `20 of 20 answered 401 on every target where the recording had 200`."""
    advice: str = ""
    """What to do about it: `the recorded credentials were masked …; see --header, --identities`."""
    carried: int = 0
    """Values correlation carried into the baseline's requests of this endpoint."""
    not_found: int = 0
    """Values the baseline's requests should have carried but the baseline never answered."""

    @property
    def reason(self) -> str:
        return f"{self.finding}: {self.advice}" if self.untested else ""

    @property
    def share(self) -> float:
        return self.matching / self.exchanges if self.exchanges else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "exchanges": self.exchanges,
            "status_matching": self.matching,
            "fidelity": round(self.share, 4),
            "failed_where_recorded_succeeded": self.failed,
            "values_carried": self.carried,
            "values_not_found": self.not_found,
            "untested": self.untested,
            "reason": self.reason,
            "finding": self.finding,
            "advice": self.advice,
        }


@dataclass(frozen=True, slots=True)
class Fidelity:
    endpoints: list[EndpointFidelity] = field(default_factory=list)

    @property
    def known(self) -> bool:
        """False for results written before the recorded status was kept: nothing to judge by."""
        return any(e.exchanges for e in self.endpoints)

    @property
    def untested(self) -> list[EndpointFidelity]:
        return [e for e in self.endpoints if e.untested]

    @property
    def inconclusive(self) -> bool:
        return bool(self.untested)

    def reasons(self) -> list[str]:
        """One line per piece of advice, naming the endpoints it concerns (worst first) and the worst finding:
        `GET /a and 2 more: 20 of 20 answered 401 on every target where the recording had 200: the recorded …`."""
        by_advice: dict[str, list[EndpointFidelity]] = {}
        for e in sorted(self.untested, key=lambda e: (-e.failed, e.endpoint)):
            by_advice.setdefault(e.advice, []).append(e)
        lines = []
        for advice, endpoints in by_advice.items():
            more = f" and {len(endpoints) - 1} more" if len(endpoints) > 1 else ""
            lines.append(f"{endpoints[0].endpoint}{more}: {endpoints[0].finding}: {advice}")
        return lines

    def of(self, endpoint: str) -> EndpointFidelity | None:
        return next((e for e in self.endpoints if e.endpoint == endpoint), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "untested_share": UNTESTED_SHARE,
            "inconclusive": self.inconclusive,
            "endpoints": [e.to_json() for e in self.endpoints],
        }


class FidelityTally:
    def __init__(self) -> None:
        self._endpoints: dict[str, _EndpointFidelity] = {}

    def add(self, endpoint: str, group: dict[str, ReplayRecord]) -> None:
        baseline = group.get("baseline")
        recorded = baseline.recorded_status if baseline is not None else None
        if baseline is None or recorded is None:
            return
        tally = self._endpoints.setdefault(endpoint, _EndpointFidelity())
        tally.exchanges += 1
        tally.carried += baseline.carried
        tally.not_found += len(baseline.not_carried)
        grpc = baseline.recorded_grpc_status
        if grpc is None:
            judge, outcome, recorded_words = failure, recorded, str(recorded)
            matched = baseline.response is not None and baseline.response.status == recorded
        else:
            judge, outcome, recorded_words = grpc_failure, grpc, status_name(grpc)
            matched = baseline.response is not None and grpc_status(baseline.response) == grpc
        tally.matching += matched
        causes = [judge(outcome, group[name]) for name in BASELINES if name in group]
        if causes and all(causes):
            tally.failed += 1
            tally.causes[causes[0]] += 1  # type: ignore[index]  # all() above: every cause is a str
            tally.recorded[recorded_words] += 1
            answer = baseline.response
            words = causes[0] if grpc is None or answer is None else status_name(grpc_status(answer))
            tally.answered[words] += 1  # type: ignore[index]  # a str: see all() above
            tally.candidate_failed += judge(outcome, group.get("candidate")) is not None

    def result(self) -> Fidelity:
        return Fidelity([self._judge(name, tally) for name, tally in sorted(self._endpoints.items())])

    @staticmethod
    def _judge(name: str, tally: _EndpointFidelity) -> EndpointFidelity:
        untested = tally.exchanges > 0 and tally.failed / tally.exchanges >= UNTESTED_SHARE
        carried = {"carried": tally.carried, "not_found": tally.not_found}
        if not untested:
            return EndpointFidelity(name, tally.exchanges, tally.matching, tally.failed, False, **carried)
        cause, count = tally.causes.most_common(1)[0]
        recorded = "/".join(status for status, _ in tally.recorded.most_common(2))
        words = tally.answered.most_common(1)[0][0]
        answered = "gave no answer" if cause == "error" else f"answered {words}"
        where = "every target" if tally.candidate_failed == tally.failed else "both baselines"
        finding = f"{count} of {tally.exchanges} {answered} on {where} where the recording had {recorded}"
        return EndpointFidelity(
            name, tally.exchanges, tally.matching, tally.failed, True, finding, _REASONS[cause], **carried
        )
