"""Attaching a tap's calls to replay results: the replay waits for the tap to mark its live log flushed after the
replay's end, however long a busy machine makes that take, instead of a fixed guess; a closed log is read within a
second, and a log nobody marks is read after the wait with a warning. Real files; the tap's writer in a thread of
its own."""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path

from replaydiff.corpora import ReplayRecord, ResultsReader, ResultsWriter, UpstreamCall, UpstreamLogWriter
from replaydiff.replayer.upstream import attach_upstream

TRACE = "0af7651916cd43dd8448eb211c80319c"


def results(path: Path) -> Path:
    with ResultsWriter(path, started_unix_us=0) as writer:
        writer.write(ReplayRecord("x0", "baseline", "GET /a", [], None, trace_id=TRACE))
    return path


def call(n: int) -> UpstreamCall:
    return UpstreamCall("inventory", "GET", f"/stock/{n}", 200, start_us=n + 1, trace_id=TRACE)


def attached(path: Path) -> list[str]:
    [record] = list(ResultsReader(path))
    return [c.path for c in record.upstream]


def test_calls_a_busy_tap_writes_late_are_still_attached(tmp_path: Path) -> None:
    """The tap had the calls before the replay ended but wrote them 2 s later (the fixed wait was 1.2 s)."""
    log = UpstreamLogWriter(tmp_path / "up.jsonl.zst", flush_interval=3600)
    log.write(call(0))
    log.flush_if_due()
    log.write(call(1))  # pending: written only by the late flush
    late = threading.Timer(2.0, lambda: (log._container.flush(), log.mark_flushed()))
    late.start()
    try:
        started = time.monotonic()
        assert attach_upstream(results(tmp_path / "r.jsonl.zst"), log.path) == 2
        assert 2.0 <= time.monotonic() - started < 5.0
    finally:
        late.join()
        log._container.close()
    assert attached(tmp_path / "r.jsonl.zst") == ["/stock/0", "/stock/1"]


def test_a_marked_log_is_read_as_soon_as_the_mark_comes(tmp_path: Path) -> None:
    log = UpstreamLogWriter(tmp_path / "up.jsonl.zst")
    log.write(call(0))
    log._container.flush()
    marker = threading.Timer(0.3, log.mark_flushed)
    marker.start()
    started = time.monotonic()
    assert attach_upstream(results(tmp_path / "r.jsonl.zst"), log.path) == 1
    assert time.monotonic() - started < 1.0  # not the old fixed 1.2 s
    marker.join()
    log._container.close()


def test_a_closed_log_needs_no_mark_and_an_unmarked_one_is_a_warning(tmp_path: Path) -> None:
    closed = UpstreamLogWriter(tmp_path / "closed.jsonl.zst")
    closed.write(call(0))
    closed._container.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert attach_upstream(results(tmp_path / "r1.jsonl.zst"), closed.path, wait_s=5) == 1
    live = UpstreamLogWriter(tmp_path / "live.jsonl.zst")
    live.write(call(0))
    live._container.flush()  # on disk, but no tap marks it: one stopped without closing, or an older tap
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert attach_upstream(results(tmp_path / "r2.jsonl.zst"), live.path, wait_s=1.5) == 1
    assert any("did not mark its log flushed" in str(w.message) for w in caught)
    live._container.close()
