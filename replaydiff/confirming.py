"""Confirmation resends: is a divergence seen on a few exchanges a change, noise, or a fluke?

One sample cannot tell a real change from per-process state (a thread list,
a cache warming up) that both baselines happened to agree on. After the
replay, the idempotent requests (GET, HEAD, OPTIONS) behind divergences seen
on at most `FEW` exchanges are sent `times` more, to all three targets at
the same moment (the fuzzer's `Sender`), and each resend is compared as the
replay was:

- the baselines differ there on a resend → **noise**: the divergence leaves
  the report and is listed as suppressed, with how many resends showed it;
- the candidate repeats the difference on every resend → **confirmed** (a change in the code answers
  the same way each time);
- the candidate repeats it on some resends or none → **flaky**: reported, but it does not fail the
  run (per-process state — a list of the tasks in flight, a cache warming up — comes and goes).

A resend counts only when the baseline answers it with the status it gave
during the replay: a request whose meaning depended on earlier ones of its
session (an id created by a POST) cannot be judged alone, and its divergence
is left as it was. Mutating requests are never resent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from replaydiff.corpora import CorpusReader, ReplayRecord, Request
from replaydiff.diff.causes import find_causes, ranked
from replaydiff.diff.compare import compare
from replaydiff.diff.difference import Key
from replaydiff.diff.findings import DiffReport, DivergenceGroup, Finding, SuppressedLocation
from replaydiff.diff.rules import Rules
from replaydiff.fuzz.sender import Answers, FuzzTargets, Sender
from replaydiff.replayer.client import Timeouts, TLSOptions

FEW = 5
"""Divergences on at most this many exchanges are resent: beyond, the replay's own sample is large enough."""
MOST = 50
"""Divergences resent at most, rarest first: bounds the time confirmation adds to a run."""
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
NOT_RESENT = frozenset({"latency"})
"""A property of a distribution, not of one exchange."""

Verdict = Literal["confirmed", "noise", "flaky"]


@dataclass(frozen=True, slots=True)
class Resent:
    """What the resends of one divergence showed."""

    verdict: Verdict | None
    """`None`: no resend could be judged (the baseline answered otherwise than during the replay)."""
    resends: int
    baselines_differed: int
    candidate_repeated: int


def worth_resending(group: DivergenceGroup) -> bool:
    return (
        group.kind not in NOT_RESENT
        and group.count <= FEW
        and group.endpoint.partition(" ")[0].upper() in IDEMPOTENT
        and any(example.divergence.exchange_id for example in group.examples)
    )


def judge(key: Key, replayed_status: int | None, answers: Iterable[Answers], rules: Rules, endpoint: str) -> Resent:
    """The verdict on one divergence from its resends: pure, so the rule is tested without a network."""
    endpoint_rules = rules.for_endpoint(endpoint)
    judged = differed = repeated = 0
    for answer in answers:
        if replayed_status is not None and _status(answer.baseline) != replayed_status:
            continue
        judged += 1
        differed += key in {d.key for d in compare(answer.baseline, answer.baseline2, endpoint_rules)}
        repeated += key in {d.key for d in compare(answer.baseline, answer.candidate, endpoint_rules)}
    if not judged:
        return Resent(None, 0, 0, 0)
    verdict: Verdict = "noise" if differed else "confirmed" if repeated == judged else "flaky"
    return Resent(verdict, judged, differed, repeated)


def _status(record: ReplayRecord) -> int | None:
    return record.response.status if record.response is not None else None


def replayed_status(group: DivergenceGroup) -> int | None:
    """The baseline's status during the replay, from the example answer's status line."""
    head = group.examples[0].baseline_body.split(" ", 1)[0]
    return int(head) if head.isdigit() else None


def confirm(
    report: DiffReport,
    *,
    corpus: Path,
    targets: FuzzTargets,
    times: int,
    rules: Rules,
    timeouts: Timeouts = Timeouts(connect_s=5.0, read_s=30.0),
    tls: TLSOptions = TLSOptions(),
) -> DiffReport:
    """Resends what is worth resending and returns the report with the verdicts applied; `tls`: how the https
    targets are trusted, as the replay trusted them."""
    groups = sorted((g for g in report.divergences if worth_resending(g)), key=lambda g: g.count)[:MOST]
    if times < 1:
        return report
    if not groups:
        return replace(report, confirm_times=times)
    wanted = {example.divergence.exchange_id for group in groups for example in group.examples}
    requests = _requests(corpus, wanted)
    verdicts: dict[str, Resent] = {}
    with Sender(targets, timeouts=timeouts, tls=tls) as sender:
        sender.check_reachable()  # a target gone since the replay: one line, not a timeout per resend
        for group in groups:
            answers = [
                sender.send(requests[exchange_id], group.endpoint)
                for example in group.examples
                if (exchange_id := example.divergence.exchange_id) in requests
                for _ in range(times)
            ]
            key = (group.kind, group.location)
            verdicts[group.fingerprint] = judge(key, replayed_status(group), answers, rules, group.endpoint)
    return replace(apply(report, verdicts), confirm_times=times)


def _requests(corpus: Path, wanted: set[str]) -> dict[str, Request]:
    """The idempotent requests of `wanted` exchanges, in one streaming pass over the corpus.

    A replay that looped the corpus suffixed its ids (`~N`): they name the same recorded request.
    """
    originals = {exchange_id.split("~", 1)[0]: exchange_id for exchange_id in wanted}
    found: dict[str, Request] = {}
    for exchange in CorpusReader(corpus):
        if exchange.id in originals and exchange.request.method.upper() in IDEMPOTENT:
            found[originals[exchange.id]] = exchange.request
    return found


def apply(report: DiffReport, verdicts: Mapping[str, Resent]) -> DiffReport:
    """Noise leaves the divergences for the suppressed list; flaky ones stay but stop failing the run."""
    noise = {fingerprint for fingerprint, resent in verdicts.items() if resent.verdict == "noise"}
    kept = [group for group in report.divergences if group.fingerprint not in noise]
    suppressed = report.suppressed + [
        SuppressedLocation(g.endpoint, g.kind, g.location, g.count, 0, resent=verdicts[g.fingerprint].baselines_differed)
        for g in report.divergences
        if g.fingerprint in noise
    ]
    confirmations = {fingerprint: resent.verdict for fingerprint, resent in verdicts.items() if resent.verdict}
    # noise is listed too: it left the divergences, and a reader may want to know which rare one did
    # a fluke and a confirmed change are not one cause, even at the same location
    flaky = [group for group in kept if confirmations.get(group.fingerprint) == "flaky"]
    others = [group for group in kept if confirmations.get(group.fingerprint) != "flaky"]
    findings = [_confirmed(finding, confirmations) for finding in ranked([*find_causes(others), *find_causes(flaky)])]
    return replace(report, divergences=kept, suppressed=suppressed, findings=findings, confirmations=confirmations)


def _confirmed(finding: Finding, confirmations: Mapping[str, str]) -> Finding:
    """Flaky when every member was (only then does it stop failing the run); confirmed when any member was."""
    seen = [confirmations.get(fingerprint) for fingerprint in finding.fingerprints]
    if all(verdict == "flaky" for verdict in seen):
        return replace(finding, confirmation="flaky")
    return replace(finding, confirmation="confirmed") if "confirmed" in seen else finding
