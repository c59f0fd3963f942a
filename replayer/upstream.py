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

import os
import time
import warnings
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from replaydiff.corpora import (
    CorpusError,
    CorpusTruncated,
    NoCompleteRecord,
    ResultsReader,
    ResultsWriter,
    UpstreamCall,
    UpstreamLogReader,
)
from replaydiff.corpora.windows import in_flight

TAP_FLUSH_WAIT_S = 10.0
"""The longest a replay waits for the tap to mark its log flushed after the replay ended. The tap marks it
(the file's modification time) every half second while nothing waits to be written, so an idle tap takes
half a second and a busy machine's as long as it needs; a log nobody marks (a tap stopped, or an older one)
is read after this wait, with a warning if it was not closed."""


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


def attach_upstream(results: Path, log: Path, *, wait_s: float = TAP_FLUSH_WAIT_S) -> int:
    """Rewrites `results` with each record's upstream calls; returns how many calls were attached."""
    if not _flushed_since(log, time.time_ns(), wait_s):
        warnings.warn(f"{log}: the tap did not mark its log flushed within {wait_s:g} s of the replay's end (is "
                      "it still running?); calls it had not written yet are not attached", stacklevel=2)  # fmt: skip
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


def _flushed_since(log: Path, since_ns: int, wait_s: float) -> bool:
    """Polls the log's modification time until the tap marks it at or after `since_ns` (`recorder.tap`: every
    call it saw before then is on disk), or finds it closed; False after `wait_s` without either. A running tap
    marks it every half second, so the log is read for its end marker (once) only after a second without one."""
    started = time.monotonic()
    looked_for_end = False
    while True:
        try:
            if os.stat(log).st_mtime_ns >= since_ns:
                return True
        except OSError:
            pass  # not created yet: a tap that saw no call so far
        waited = time.monotonic() - started
        if not looked_for_end and waited >= 1.0:
            looked_for_end = True
            if _closed(log):
                return True
        if waited >= wait_s:
            return False
        time.sleep(0.05)


def _closed(log: Path) -> bool:
    """The tap closed its log (it has its end marker): everything it saw is in it."""
    try:
        return UpstreamLogReader(log).closed_cleanly()
    except (OSError, CorpusError):  # not there yet, or nothing readable in it yet
        return False


def _attribute_by_time(results: Path, calls: list[UpstreamCall]) -> dict[tuple[str, str], list[UpstreamCall]]:
    """Each call to the replayed request that started last among those in flight when it started (on the
    target its listener names, `TARGET/NAME`, else on any): a replay sends many requests at once, so the most
    recent one is the likeliest cause; the call is marked approximate."""
    reader = ResultsReader(results)
    windows = [
        (attempt.sent_us, attempt.sent_us + attempt.duration_us, (record.target, record.exchange_id))
        for record in reader
        for attempt in record.attempts
    ]
    epoch_unix_us = int(reader.end.get("epoch_unix_us", 0))
    instants = ((call.start_us - epoch_unix_us, call) for call in calls)
    attributed: dict[tuple[str, str], list[UpstreamCall]] = defaultdict(list)
    for call, owners in in_flight(windows, instants):
        target_hint = call.dependency.rpartition("/")[0]
        candidates = [(start, owner) for start, owner in owners if not target_hint or owner[0] == target_hint]
        if candidates:
            _, owner = max(candidates)
            attributed[owner].append(replace(call, dependency=_dependency(call), approximate=True))
    return attributed


def _attachable(call: UpstreamCall) -> UpstreamCall:
    """Without the whole request and answer the tap logged (a mock's recording needs those; a results
    file does not): the results stay the size they were, however large the calls' bodies."""
    return replace(call, dependency=_dependency(call), request=None, answer=None)


def _dependency(call: UpstreamCall) -> str:
    """`candidate/inventory` → `inventory`: the target part only tells the tap's listeners apart."""
    return call.dependency.rpartition("/")[2]
