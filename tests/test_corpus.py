"""The corpus container: round trips, crash safety, and precise errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replaydiff.corpora import (
    CorpusNotFound,
    CorpusReader,
    CorpusTruncated,
    CorpusWriter,
    NotACorpus,
    ResultsReader,
    UnsupportedFormat,
)
from replaydiff.corpora.container import decompressed_bytes
from tests.strategies import exchanges


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(exchanges, max_size=12), background=st.booleans(), flush_interval=st.sampled_from([0, 1.0]))
def test_round_trip_keeps_every_field(tmp_path: Path, batch: list, background: bool, flush_interval: float) -> None:
    path = tmp_path / "c.jsonl.zst"
    with CorpusWriter(path, source="test", background=background, flush_interval=flush_interval) as writer:
        for exchange in batch:
            writer.write(exchange)
    reader = CorpusReader(path)
    assert list(reader) == batch
    assert reader.complete
    assert reader.header["source"] == "test"


def _write(path: Path, count: int) -> None:
    from replaydiff.corpora import Exchange, Request, Response

    with CorpusWriter(path, source="test", flush_interval=0) as writer:
        for i in range(count):
            writer.write(
                Exchange(
                    id=str(i),
                    session="s",
                    start_us=i,
                    request=Request("GET", "http", "h", 80, f"/{i}"),
                    response=Response(200, body=b"x" * 100),
                )
            )


def test_a_background_writer_reports_a_full_disk_at_the_latest_on_close() -> None:
    writer = CorpusWriter("/dev/full", background=True)  # every write to it fails with ENOSPC
    with pytest.raises(OSError, match="No space left"):
        writer.close()


@pytest.mark.parametrize("cut", [7, 60, 200])
def test_truncated_tail_keeps_complete_records_and_warns(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "c.jsonl.zst"
    _write(path, 50)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reader = CorpusReader(path)
        kept = list(reader)
    assert not reader.complete
    # every frame but the damaged last one (the end marker shares it with record 49) survives
    assert 45 <= len(kept) <= 50
    assert [e.id for e in kept] == [str(i) for i in range(len(kept))]
    assert any(issubclass(w.category, CorpusTruncated) for w in caught)


def test_sigkill_loses_at_most_the_last_second(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl.zst"
    script = f"""
import time
from replaydiff.corpora import CorpusWriter, Exchange, Request
w = CorpusWriter({str(path)!r}, source="test")
i = 0
while True:
    w.write(Exchange(id=str(i), session="s", start_us=i, request=Request("GET", "http", "h", 80, "/"), response=None))
    print(i, flush=True)
    i += 1
    time.sleep(0.01)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    written = [proc.stdout.readline() for _ in range(250)]  # about 2.5 s of writes, however long they take
    os.kill(proc.pid, signal.SIGKILL)
    written += proc.stdout.read().split()
    proc.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reader = CorpusReader(path)
        kept = list(reader)
    assert not reader.complete
    assert len(written) - len(kept) <= 150  # 1 s of writes at 100/s, plus slack for a slow machine
    assert len(kept) >= 50


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusNotFound, match="no such file"):
        CorpusReader(tmp_path / "nope.jsonl.zst")


def test_not_a_corpus(tmp_path: Path) -> None:
    path = tmp_path / "plain.txt"
    path.write_text("hello\n")
    with pytest.raises(NotACorpus, match="not a zstd"):
        CorpusReader(path)


def test_results_file_is_not_a_corpus(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.zst"
    _write(path, 1)
    with pytest.raises(UnsupportedFormat, match="expected replaydiff-results/1"):
        ResultsReader(path)


def test_standard_tools_can_read_it(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.zst"
    _write(path, 3)
    lines = decompressed_bytes(path).splitlines()
    assert b'"format":"replaydiff-corpus/1"' in lines[0]
    assert len(lines) == 5  # header, 3 records, end marker
