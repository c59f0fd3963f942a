"""Attach the tap's upstream calls to the replay results they belong to.

The tap logs each call with the `traceparent` the service propagated; the
replayer gave every (exchange, target) its own trace id, so the join is exact.
It runs after the replay, when the tap has flushed what it saw.
"""

from __future__ import annotations

import os
import time
import warnings
from collections import defaultdict
from pathlib import Path

from corpora import CorpusTruncated, ResultsReader, ResultsWriter, UpstreamCall, UpstreamLogReader

TAP_FLUSH_WAIT_S = 1.2
"""The tap writes a frame at least every second; waiting a little longer sees every call of the replay."""


def calls_by_trace(log: Path, *, since_unix_us: int = 0) -> dict[str, list[UpstreamCall]]:
    """Calls from `since_unix_us` on: a tap that served an earlier replay with the same trace ids has those too."""
    with warnings.catch_warnings():
        # a live tap's log has no end marker yet: that is expected here, not damage
        warnings.simplefilter("ignore", CorpusTruncated)
        calls: dict[str, list[UpstreamCall]] = defaultdict(list)
        for call in UpstreamLogReader(log):
            if call.trace_id and call.start_us >= since_unix_us:
                calls[call.trace_id].append(call)
    for sequence in calls.values():
        sequence.sort(key=lambda call: call.start_us)
    return calls


def attach_upstream(results: Path, log: Path, *, wait_s: float = TAP_FLUSH_WAIT_S) -> int:
    """Rewrites `results` with each record's upstream calls; returns how many calls were attached."""
    time.sleep(wait_s)
    reader = ResultsReader(results)
    calls = calls_by_trace(log, since_unix_us=int(reader.header.get("started_unix_us", 0)))
    staged = results.with_name(results.name + ".partial")
    attached = 0
    with ResultsWriter(staged, **{k: v for k, v in reader.header.items() if k not in ("format", "created")},
                       upstream_log=str(log)) as writer:
        for record in reader:
            record.upstream = calls.get(record.trace_id, [])
            attached += len(record.upstream)
            writer.write(record)
        writer.close(**reader.end, upstream_calls=attached)
    os.replace(staged, results)
    return attached
