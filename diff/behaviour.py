"""Compare how two targets behaved, not just what they answered: attempts, upstream calls, retries.

A retry or timeout policy that misbehaves two hops away shows here: the
candidate calls its dependency four times where the baseline called it twice,
or gives up sooner. The locations are per dependency, so the noise rule
(baseline vs baseline2) applies to them exactly as to response fields.

Under a mock (`replaydiff tap --mock`) each call also says how the recording
answered it, which tells more than the calls' outcomes: a call the recording
does not have (`unexpected call`), a recorded call one side no longer makes
(`missing call`), and a recorded call made with another request (`call
changed`, with what changed).
"""

from __future__ import annotations

from collections import defaultdict

from replaydiff.corpora import ReplayRecord, UpstreamCall
from replaydiff.diff.difference import Difference


def compare_behaviour(left: ReplayRecord, right: ReplayRecord) -> list[Difference]:
    differences: list[Difference] = []
    if len(left.attempts) != len(right.attempts):
        differences.append(
            Difference("retry", "client attempts", _attempts(left), _attempts(right))
        )
    left_calls, right_calls = _by_dependency(left.upstream), _by_dependency(right.upstream)
    for dependency in sorted(left_calls.keys() | right_calls.keys()):
        mine, theirs = left_calls.get(dependency, []), right_calls.get(dependency, [])
        sequences = call_sequence(mine), call_sequence(theirs)
        if _retries(mine) != _retries(theirs):
            differences.append(Difference("retry", dependency, *sequences))
        mocked = _mock_differences(dependency, mine, theirs)
        differences.extend(mocked)
        if mocked:
            continue  # the outcome sequences differ because of those calls: saying so again adds nothing
        if [_outcome(c) for c in mine] != [_outcome(c) for c in theirs]:
            differences.append(Difference("upstream", dependency, *sequences))
        elif _gave_up(mine) and _gave_up(theirs) and _clearly_apart(_persisted_us(mine), _persisted_us(theirs)):
            differences.append(
                Difference("retry", f"{dependency} time before giving up", *(_ms(_persisted_us(c)) for c in (mine, theirs)))
            )
    return differences


UNEXPECTED_CALL = "unexpected call"
MISSING_CALL = "missing call"
CALL_CHANGED = "call changed"
MOCK_LOCATIONS = (UNEXPECTED_CALL, MISSING_CALL, CALL_CHANGED)
"""Suffixes of an upstream divergence's location (`inventory unexpected call`): one fingerprint each."""


def _mock_differences(dependency: str, mine: list[UpstreamCall], theirs: list[UpstreamCall]) -> list[Difference]:
    if not any(call.mock for call in (*mine, *theirs)):
        return []
    differences = []
    unexpected = _unexpected(mine), _unexpected(theirs)
    if unexpected[0] != unexpected[1]:
        differences.append(Difference("upstream", f"{dependency} {UNEXPECTED_CALL}", *(_joined(u) for u in unexpected)))
    made = _recorded_made(mine), _recorded_made(theirs)
    if made[0] - made[1]:
        differences.append(
            Difference("upstream", f"{dependency} {MISSING_CALL}", *(_recorded_list(m, mine + theirs) for m in made))
        )
    changed = _changed(mine), _changed(theirs)
    if changed[0] != changed[1]:
        differences.append(Difference("upstream", f"{dependency} {CALL_CHANGED}", *(_joined(c) for c in changed)))
    return differences


def _unexpected(calls: list[UpstreamCall]) -> list[str]:
    """Calls the recorded exchange does not have (answered from another exchange, or not at all)."""
    return [f"{call.method} {call.path}" for call in calls if call.mock in ("corpus", "miss")]


def _recorded_made(calls: list[UpstreamCall]) -> set[int]:
    return {call.mock_recorded for call in calls if call.mock in ("exact", "exchange") and call.mock_recorded is not None}


def _recorded_list(made: set[int], calls: list[UpstreamCall]) -> str | None:
    """`GET /stock/7 (recorded #0)`, for each recorded call made."""
    names = {c.mock_recorded: f"{c.method} {c.path}" for c in calls if c.mock_recorded is not None}
    return ", ".join(f"{names.get(index, '?')} (recorded #{index})" for index in sorted(made)) or None


def _changed(calls: list[UpstreamCall]) -> list[str]:
    return [
        f"{call.method} {call.path}: {'; '.join(call.mock_changes)}"
        for call in calls
        if call.mock == "exchange" and call.mock_changes
    ]


def _joined(items: list[str]) -> str | None:
    return ", ".join(items) or None


def _by_dependency(calls: list[UpstreamCall]) -> dict[str, list[UpstreamCall]]:
    grouped: dict[str, list[UpstreamCall]] = defaultdict(list)
    for call in sorted(calls, key=lambda c: c.start_us):
        grouped[call.dependency].append(call)
    return grouped


def _outcome(call: UpstreamCall) -> str:
    return call.error or str(call.status)


def _failed(call: UpstreamCall) -> bool:
    return call.error is not None or (call.status is not None and call.status >= 500)


def _retries(calls: list[UpstreamCall]) -> int:
    """Calls that repeat the previous call to the same method and path after it failed."""
    return sum(
        1
        for previous, current in zip(calls, calls[1:])
        if _failed(previous) and (previous.method, previous.path) == (current.method, current.path)
    )


GIVE_UP_RATIO = 2.0
GIVE_UP_MIN_US = 50_000
"""Both must hold for two give-up times to differ: timing jitter alone never doubles a 50 ms wait."""


def _gave_up(calls: list[UpstreamCall]) -> bool:
    return bool(calls) and _failed(calls[-1])


def _persisted_us(calls: list[UpstreamCall]) -> int:
    """From the first call's start to the last call's end: how long the service kept trying."""
    return calls[-1].start_us + calls[-1].duration_us - calls[0].start_us


def _clearly_apart(left_us: int, right_us: int) -> bool:
    low, high = sorted((left_us, right_us))
    return high - low >= GIVE_UP_MIN_US and high >= GIVE_UP_RATIO * max(low, 1)


def _ms(microseconds: int) -> str:
    return f"{microseconds / 1000:.0f} ms"


def call_sequence(calls: list[UpstreamCall]) -> str | None:
    """`GET /stock/7 → 503 (fault), +12 ms GET /stock/7 → 200`: what happened, in order, with the gaps."""
    if not calls:
        return None
    parts = []
    for index, call in enumerate(calls):
        gap = "" if index == 0 else f"+{(call.start_us - calls[index - 1].start_us) / 1000:.0f} ms "
        fault = " (fault)" if call.fault else ""
        approximate = " (attributed by time)" if call.approximate else ""
        parts.append(f"{gap}{call.method} {call.path} → {_outcome(call)}{fault}{approximate}")
    return ", ".join(parts)


def _attempts(record: ReplayRecord) -> str:
    return ", ".join(a.error or str(a.status) for a in record.attempts) or "none"
