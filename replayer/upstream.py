"""Attach the tap's upstream calls to the replay results they belong to.

The tap logs each call with the `traceparent` the service propagated; the
replayer gave every (exchange, target) its own trace id, so that join is
exact. A service that does not propagate `traceparent` leaves calls without
one: those are attributed by time (the replayed request in flight when the
call started) and marked approximate. Name such a dependency `TARGET/NAME`
in the tap (one listening port per target) so only that target's requests are
candidates. It runs after the replay, when the tap has flushed what it saw.
"""

from __future__ import annotations

import bisect
import os
import time
import warnings
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from replaydiff.corpora import (
    CorpusTruncated,
    NoCompleteRecord,
    ReplayRecord,
    ResultsReader,
    ResultsWriter,
    UpstreamCall,
    UpstreamLogReader,
)

TAP_FLUSH_WAIT_S = 1.2
"""The tap writes a frame at least every second; waiting a little longer sees every call of the replay."""


def read_calls(log: Path, *, since_unix_us: int = 0) -> tuple[dict[str, list[UpstreamCall]], list[UpstreamCall]]:
    """(calls by trace id, calls without one) from `since_unix_us` on: a tap that served an earlier replay
    with the same trace ids has those too."""
    traced: dict[str, list[UpstreamCall]] = defaultdict(list)
    untraced: list[UpstreamCall] = []
    with warnings.catch_warnings():
        # a live tap's log has no end marker yet: that is expected here, not damage
        warnings.simplefilter("ignore", CorpusTruncated)
        try:
            reader = UpstreamLogReader(log)
        except NoCompleteRecord:
            return traced, untraced  # a live log whose first frame of calls is being written as we read
        for call in reader:
            if call.start_us < since_unix_us:
                continue
            if call.trace_id:
                traced[call.trace_id].append(_attachable(call))
            else:
                untraced.append(replace(call, request=None, answer=None))  # the listener's `TARGET/` kept: a hint
    for sequence in traced.values():
        sequence.sort(key=lambda call: call.start_us)
    return traced, untraced


class _Windows:
    """Replayed requests by the time they were in flight (offsets from the replay's start), per target."""

    def __init__(self) -> None:
        self.epoch_unix_us = 0
        self._starts: dict[str, list[tuple[int, int, str]]] = defaultdict(list)

    def add(self, record: ReplayRecord) -> None:
        for attempt in record.attempts:
            self._starts[record.target].append(
                (attempt.sent_us, attempt.sent_us + attempt.duration_us, record.exchange_id)
            )

    def owner(self, call: UpstreamCall) -> tuple[str, str] | None:
        """(target, exchange id) of the request that started last before the call and was still in flight."""
        target_hint, _, _ = call.dependency.rpartition("/")
        at = call.start_us - self.epoch_unix_us
        best: tuple[int, str, str] | None = None
        for target, windows in self._starts.items():
            if target_hint and target != target_hint:
                continue
            windows.sort()
            index = bisect.bisect_right(windows, (at, 2**63, "")) - 1
            if index >= 0 and windows[index][1] >= at and (best is None or windows[index][0] > best[0]):
                best = (windows[index][0], target, windows[index][2])
        return (best[1], best[2]) if best else None


def attach_upstream(results: Path, log: Path, *, wait_s: float = TAP_FLUSH_WAIT_S) -> int:
    """Rewrites `results` with each record's upstream calls; returns how many calls were attached."""
    time.sleep(wait_s)
    reader = ResultsReader(results)
    traced, untraced = read_calls(log, since_unix_us=int(reader.header.get("started_unix_us", 0)))
    approximate = _attribute_by_time(results, untraced) if untraced else {}
    staged = results.with_name(results.name + ".partial")
    attached = 0
    header = {k: v for k, v in reader.header.items() if k not in ("format", "created")}
    with ResultsWriter(staged, **header, upstream_log=str(log)) as writer:
        for record in reader:
            record.upstream = traced.get(record.trace_id, []) + approximate.get((record.target, record.exchange_id), [])
            attached += len(record.upstream)
            writer.write(record)
        writer.close(**reader.end, upstream_calls=attached)
    os.replace(staged, results)
    return attached


def _attribute_by_time(results: Path, calls: list[UpstreamCall]) -> dict[tuple[str, str], list[UpstreamCall]]:
    reader = ResultsReader(results)
    windows = _Windows()
    for record in reader:
        windows.add(record)
    windows.epoch_unix_us = int(reader.end.get("epoch_unix_us", 0))
    attributed: dict[tuple[str, str], list[UpstreamCall]] = defaultdict(list)
    for call in sorted(calls, key=lambda c: c.start_us):
        owner = windows.owner(call)
        if owner is not None:
            attributed[owner].append(replace(call, dependency=_dependency(call), approximate=True))
    return attributed


def _attachable(call: UpstreamCall) -> UpstreamCall:
    """Without the whole request and answer the tap logged (a mock's recording needs those; a results
    file does not): the results stay the size they were, however large the calls' bodies."""
    return replace(call, dependency=_dependency(call), request=None, answer=None)


def _dependency(call: UpstreamCall) -> str:
    """`candidate/inventory` → `inventory`: the target part only tells the tap's listeners apart."""
    return call.dependency.rpartition("/")[2]
