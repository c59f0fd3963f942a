"""The chaos suite: a replay against targets that misbehave, one behaviour each.

Every misbehaviour must end as a recorded outcome (an answer or an error kind), the replay must finish,
`diff` must work on the results, and the replay's memory (the kernel's high-water mark of its RSS) must stay
bounded. Each case runs the real command line, as a user would, against a real socket on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import psutil
import pytest

from replaydiff.corpora import CorpusWriter, Exchange, Request, Response, ResultsReader
from replaydiff.replayer.http1 import KEPT_PREFIX
from tests.chaos_servers import BEHAVIOURS, FIFTY_MB, misbehaving

FIFTY_MB_DIGEST = "sha256:" + hashlib.sha256(bytes(range(256)) * (FIFTY_MB // 256)).hexdigest()

BIN = Path(sys.executable).parent
TIMEOUT_S = 2.0
"""The replay's --timeout, except for 50 MB answers, which a loaded machine may need longer to move."""
MEMORY_LIMIT_MB = 300
EXCHANGES = 3

EXPECTED = {
    # behaviour → (error kind of every attempt, or None for an answer), status when answered
    "never-answers": ("timeout", None),
    "garbage": ("protocol", None),
    "closes-mid-body": ("reset", None),
    "50mb-body": (None, 200),
    "1mb-header-line": (None, 200),
    "10000-headers": (None, 200),
    "trickle": ("timeout", None),
    "rst": ("reset", None),
}


def _corpus(path: Path, count: int = EXCHANGES) -> Path:
    with CorpusWriter(path, source="chaos") as writer:
        for i in range(count):
            writer.write(
                Exchange(
                    id=f"x{i}", session=f"s{i}", start_us=i * 1000,
                    request=Request("GET", "http", "shop.internal", 80, f"/items/{i}", headers=[("Host", "shop")]),
                    response=Response(200, body=b"{}"),
                )
            )  # fmt: skip
    return path


def _peak_rss_mb(pid: int) -> float:
    """The kernel's high-water mark of the process's RSS (VmHWM): no peak between two polls is missed."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_measured(args: list, timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    """Runs a command; returns it and the peak RSS in MB of it and its children."""
    process = psutil.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, float] = {}
    finished = threading.Event()

    def poll() -> None:
        while not finished.wait(0.05):
            try:
                for proc in [process, *process.children(recursive=True)]:
                    peaks[proc.pid] = max(peaks.get(proc.pid, 0.0), _peak_rss_mb(proc.pid))
            except (psutil.Error, OSError):
                pass  # a child just ended

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        finished.set()
        poller.join()
        if process.poll() is None:
            process.kill()
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr), max(peaks.values(), default=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BEHAVIOURS))
def test_each_misbehaviour_ends_as_a_recorded_outcome(tmp_path: Path, name: str) -> None:
    corpus = _corpus(tmp_path / "c.jsonl.zst")
    results = tmp_path / "r.jsonl.zst"
    with misbehaving(BEHAVIOURS[name]) as url:
        replay, peak_mb = run_measured(
            [BIN / "replaydiff", "replay", corpus, "--baseline", url, "--candidate", url,
             "--timeout", str(TIMEOUT_S if name != "50mb-body" else 30.0), "-o", results],
            timeout=60,
        )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    assert "Traceback" not in replay.stderr
    assert peak_mb <= MEMORY_LIMIT_MB, f"replay peaked at {peak_mb:.0f} MB"

    records = list(ResultsReader(results))
    assert len(records) == 3 * EXCHANGES, "every exchange, every target"
    error, status = EXPECTED[name]
    for record in records:
        final = record.final
        assert final is not None
        assert (final.error, final.status) == (error, status), (name, final)
        if name == "50mb-body":
            assert record.response is not None and record.response.body_size == FIFTY_MB
            assert record.response.body_digest == FIFTY_MB_DIGEST and len(record.response.body) == KEPT_PREFIX
        if error == "timeout":
            assert final.duration_us < (TIMEOUT_S + 1.5) * 1e6, "the whole answer is bounded, not each read"

    report = tmp_path / "report.json"
    diff, diff_peak_mb = run_measured([BIN / "replaydiff", "diff", results, "--json", report], timeout=60)
    assert diff.returncode in (0, 1, 3), diff.stderr
    assert "Traceback" not in diff.stderr
    assert report.stat().st_size < 5 * 1024 * 1024
    assert diff_peak_mb <= MEMORY_LIMIT_MB
    orjson.loads(report.read_bytes())


@pytest.mark.slow
def test_the_tap_cuts_a_trickling_dependency_at_its_timeout_and_logs_a_timeout(tmp_path: Path) -> None:
    import re
    import signal
    import time

    import httpx

    from replaydiff.corpora import UpstreamLogReader
    from tests.chaos_servers import trickle

    log = tmp_path / "up.jsonl.zst"
    with misbehaving(trickle) as dependency:
        tap = subprocess.Popen(
            [BIN / "replaydiff", "tap", "--route", f"slow={dependency}", "-o", log, "--timeout", "1",
             "--confdir", tmp_path / "conf"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert tap.stderr is not None
            listening = re.search(r"slow (http://127\.0\.0\.1:\d+)", tap.stderr.readline())
            assert listening, "the tap did not start"
            started = time.monotonic()
            answer = httpx.get(f"{listening.group(1)}/stock/1", timeout=30)
            waited = time.monotonic() - started
        finally:
            tap.send_signal(signal.SIGTERM)
            _, rest = tap.communicate(timeout=20)
    assert tap.returncode == 0, rest
    assert answer.status_code == 502
    assert waited < 10, "cut at about its timeout, not after the trickle's 5 s"
    [call] = list(UpstreamLogReader(log))
    assert call.dependency == "slow" and call.status is None
    assert call.error == "timeout: no complete answer within 1 s"
    assert 1_000_000 <= call.duration_us < 3_000_000


def test_the_fuzz_sender_ends_a_trickling_answer_as_a_timeout() -> None:
    from replaydiff.fuzz.sender import FuzzTargets, Sender
    from replaydiff.replayer.client import Timeouts
    from tests.chaos_servers import trickle

    with misbehaving(trickle) as url, Sender(FuzzTargets.parse(url, url), timeouts=Timeouts(1.0, 1.0)) as sender:
        answers = sender.send(Request("GET", "http", "h", 80, "/items/1", headers=[("Host", "h")]), "GET /items/{id}")
    for record in answers:
        final = record.final
        assert final is not None and final.error == "timeout" and record.response is None
        assert final.duration_us < 2_500_000, "bounded by the whole answer's timeout, not per read"
