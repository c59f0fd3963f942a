"""How a mock picks the recorded answer, what the differ says about mocked calls, and bad recordings."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replaydiff.corpora import (
    CorpusWriter,
    Exchange,
    ReplayRecord,
    Request,
    Response,
    UpstreamCall,
    UpstreamLogReader,
    UpstreamLogWriter,
)
from replaydiff.corpora.trace import TRACE_TAG
from replaydiff.diff.behaviour import compare_behaviour
from replaydiff.recorder.mock import CallRequest, IgnoredField, MockError, MockRecording, load_ignored
from replaydiff.tapping import TapProcess

REPLAYDIFF = [sys.executable, "-m", "replaydiff.cli"]
TARGET_DIGITS = {"baseline": "0000000a", "baseline2": "0000000b", "candidate": "0000000c"}


def _trace(exchange: int, target: str = "baseline") -> str:
    return f"{exchange:024x}{TARGET_DIGITS[target]}"


def _call(exchange: int, method: str, path: str, body: object, answer: object, *, query: str = "") -> UpstreamCall:
    payload = json.dumps(body).encode() if body is not None else b""
    return UpstreamCall(
        dependency="inventory", method=method, path=path, status=200, trace_id=_trace(exchange), query=query,
        request=Request(method, "http", "inventory", 80, path, query, body=payload),
        answer=Response(200, headers=[("Content-Type", "application/json"), ("Content-Length", "99")],
                        body=json.dumps(answer).encode()),
    )  # fmt: skip


def _ask(recording: MockRecording, exchange: int, ordinal: int, method: str, path: str, body: object = None,
         *, target: str = "candidate", query: str = "", dependency: str = "inventory"):  # type: ignore[no-untyped-def]
    payload = json.dumps(body).encode() if body is not None else b""
    return recording.answer(_trace(exchange, target), ordinal, CallRequest(dependency, method, path, query, payload))


calls_of_an_exchange = st.lists(
    st.tuples(st.sampled_from(["GET", "POST"]), st.sampled_from(["/stock/1", "/stock/2", "/price"]),
              st.dictionaries(st.sampled_from("abc"), st.integers(0, 3), max_size=3)),
    min_size=1, max_size=6,
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(exchanges=st.lists(calls_of_an_exchange, min_size=1, max_size=4))
def test_every_target_replaying_the_recorded_calls_gets_the_recorded_answers_exactly(
    exchanges: list[list[tuple[str, str, dict[str, int]]]],
) -> None:
    recording = MockRecording()
    for number, calls in enumerate(exchanges):
        for ordinal, (method, path, body) in enumerate(calls):
            recording.add(_call(number, method, path, body, {"exchange": number, "ordinal": ordinal}))
    for number, calls in enumerate(exchanges):
        for target in TARGET_DIGITS:
            for ordinal, (method, path, body) in enumerate(calls):
                match = _ask(recording, number, ordinal, method, path, body, target=target)
                assert match.how == "exact" and match.recorded == ordinal
                assert match.answer is not None
                assert json.loads(match.answer.body) == {"exchange": number, "ordinal": ordinal}
                assert "Content-Length" not in dict(match.answer.headers)  # recomputed by the tap, never replayed


def test_a_changed_request_is_answered_by_the_best_call_of_its_exchange_then_of_the_recording() -> None:
    recording = MockRecording(ignored=(IgnoredField("$.requested_at"),))
    recording.add(_call(1, "GET", "/stock/7", None, {"n": 7}))
    recording.add(_call(1, "POST", "/price", {"sku": 7, "qty": 1, "requested_at": 1}, {"cents": 700}))
    recording.add(_call(2, "POST", "/price", {"sku": 9, "qty": 1}, {"cents": 900}))
    # a volatile field the rules ignore still matches exactly
    assert _ask(recording, 1, 1, "POST", "/price", {"sku": 7, "qty": 1, "requested_at": 99}).how == "exact"
    # the same call in another position: the exchange's, with nothing changed (a retry, a reordering)
    retried = _ask(recording, 1, 2, "POST", "/price", {"sku": 7, "qty": 1, "requested_at": 5})
    assert (retried.how, retried.recorded, retried.changes) == ("exchange", 1, [])
    changed = _ask(recording, 1, 1, "POST", "/price", {"sku": 7, "qty": 2})
    assert (changed.how, changed.recorded) == ("exchange", 1)
    assert changed.changes == ["body $.qty: 1 → 2"]
    # an exchange the recording does not have: the same request anywhere in it
    elsewhere = _ask(recording, 5, 0, "POST", "/price", {"sku": 9, "qty": 1})
    assert elsewhere.how == "corpus" and elsewhere.answer is not None and json.loads(elsewhere.answer.body) == {"cents": 900}
    assert _ask(recording, 1, 0, "DELETE", "/price").how == "miss"
    assert _ask(recording, 1, 0, "GET", "/stock/7", dependency="payments").how == "miss"


def test_the_rules_file_syntax_of_diff_names_the_ignored_fields(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\npath = "$.at"\nignore = true\n\n[[rule]]\nheader = "x-id"\nignore = true\n\n'
                     '[[rule]]\nendpoint = "POST /price"\npath = "$.items[*].ts"\nignore = true\n')  # fmt: skip
    assert load_ignored(rules) == (IgnoredField("$.at"), IgnoredField("$.items[*].ts", "POST /price"))
    recording = MockRecording(ignored=load_ignored(rules))
    recording.add(_call(1, "POST", "/price", {"items": [{"sku": 1, "ts": 1}]}, {"ok": 1}))
    assert _ask(recording, 1, 0, "POST", "/price", {"items": [{"sku": 1, "ts": 2}]}).how == "exact"
    assert _ask(recording, 1, 0, "POST", "/price", {"items": [{"sku": 2, "ts": 1}]}).how == "exchange"
    rules.write_text("rule = 3\n")
    with pytest.raises(MockError, match="array of tables"):
        load_ignored(rules)


def _record(target: str, calls: list[UpstreamCall]) -> ReplayRecord:
    return ReplayRecord(exchange_id="x1", target=target, endpoint="GET /product/{id}", attempts=[], response=None,
                        upstream=calls)  # fmt: skip


def _mocked(path: str, how: str, recorded: int | None, start_us: int, changes: list[str] | None = None) -> UpstreamCall:
    method = "POST" if path == "/price" else "GET"
    return UpstreamCall("inventory", method, path, 200, start_us=start_us, mock=how, mock_recorded=recorded,
                        mock_changes=changes or [])  # fmt: skip


def test_the_differ_names_unexpected_missing_and_changed_calls_under_a_mock() -> None:
    baseline = _record("baseline", [_mocked("/stock/1", "exact", 0, 1), _mocked("/price", "exact", 1, 2)])
    assert compare_behaviour(baseline, baseline) == []
    extra = _record("candidate", [*baseline.upstream, _mocked("/audit/1", "miss", None, 3)])
    assert [(d.kind, d.location) for d in compare_behaviour(baseline, extra)] == [("upstream", "inventory unexpected call")]
    skipped = _record("candidate", baseline.upstream[:1])
    [missing] = compare_behaviour(baseline, skipped)
    assert (missing.location, missing.left, missing.right) == (
        "inventory missing call", "GET /stock/1 (recorded #0), POST /price (recorded #1)", "GET /stock/1 (recorded #0)"
    )
    changed = _record("candidate", [baseline.upstream[0], _mocked("/price", "exchange", 1, 2, ["body $.qty: 1 → 2"])])
    [difference] = compare_behaviour(baseline, changed)
    assert (difference.location, difference.right) == ("inventory call changed", "POST /price: body $.qty: 1 → 2")
    # forwarded calls (no mock) are compared by their outcomes, as before
    plain = [UpstreamCall("inventory", "GET", "/stock/1", 200, start_us=1)]
    assert compare_behaviour(_record("baseline", plain), _record("candidate", [])) != []


def _damaged_log(tmp_path: Path) -> Path:
    """40 calls, cut a third from the end as a full disk or a killed copy leaves them."""
    log = tmp_path / "up.jsonl.zst"
    with UpstreamLogWriter(log, flush_interval=0) as writer:
        for number in range(40):
            writer.write(_call(number, "GET", f"/stock/{number}", None, {"n": number}))
            writer.flush_if_due()  # every record its own frame: a cut keeps the frames before it
    data = log.read_bytes()
    log.write_bytes(data[: len(data) * 2 // 3])
    return log


def test_a_damaged_recording_keeps_every_call_before_the_damage(tmp_path: Path) -> None:
    log = _damaged_log(tmp_path)
    with pytest.warns(Warning, match="kept"):
        recording = MockRecording.load(log)
    assert 10 < recording.calls < 40
    assert _ask(recording, 0, 0, "GET", "/stock/0").how == "exact"
    empty = tmp_path / "empty.jsonl.zst"
    with UpstreamLogWriter(empty) as writer:
        writer.write(UpstreamCall("inventory", "GET", "/x", 200))  # a call without its request and answer
    with pytest.raises(MockError, match="no call with its request and answer"):
        MockRecording.load(empty)


def test_a_run_s_mock_starts_from_a_damaged_recording_and_passes_its_warning_on(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """`run --mock-upstreams` and the demo start the tap as a child: its warning comes before it listens."""
    tap = TapProcess(["--mock", str(_damaged_log(tmp_path)), "--route", "inventory=@0",
                      "-o", str(tmp_path / "o.zst"), "--confdir", str(tmp_path / "conf")])  # fmt: skip
    with tap:
        assert "listening" in tap.announced
    assert "replaydiff: warning:" in capfd.readouterr().err


def test_a_dependency_the_recording_never_saw_gets_502_and_a_logged_miss_and_faults_still_apply(
    tmp_path: Path,
) -> None:
    log = tmp_path / "up.jsonl.zst"
    with UpstreamLogWriter(log) as writer:
        writer.write(_call(1, "GET", "/stock/1", None, {"n": 1}))
        writer.write(_call(1, "GET", "/stock/2", None, {"n": 2}))
    faults = tmp_path / "faults.toml"
    faults.write_text('[[fault]]\npath = "/stock/2"\nstatus = 503\n')
    out = tmp_path / "mocked.jsonl.zst"
    proc = subprocess.Popen(
        [*REPLAYDIFF, "tap", "--mock", str(log), "--route", "payments=@0", "--route", "inventory=@0", "-o", str(out),
         "--faults", str(faults), "--confdir", str(tmp_path / "conf")],
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        urls = dict(re.findall(r"(\w+) (http://127\.0\.0\.1:\d+)", line))
        assert set(urls) == {"payments", "inventory"}, line
        traceparent = {"traceparent": f"00-{_trace(1)}-{1:016x}-01"}
        assert httpx.get(urls["payments"] + "/charge", headers=traceparent).status_code == 502
        answer = httpx.get(urls["inventory"] + "/stock/1", headers=traceparent)
        assert answer.status_code == 200 and answer.json() == {"n": 1}
        assert httpx.get(urls["inventory"] + "/stock/2", headers=traceparent).status_code == 503  # the seeded fault
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "Traceback" not in rest
    assert "no call to dependency 'payments'" in rest
    assert "mock: exact 1, miss 1" in rest
    assert [(c.dependency, c.mock, c.status, c.fault) for c in UpstreamLogReader(out)] == [
        ("payments", "miss", 502, None), ("inventory", "exact", 200, None), ("inventory", None, 503, "status 503")
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--route", "a=@9001", "--route", "b=@9001", "--mock", "{log}"], "both ask for port 9001"),
        (["--route", "a=@9001"], "needs the real URL"),
        (["--route", "a=@9001", "--mock", "{log}", "--on-miss", "forward"], "--on-miss forward needs the real URL"),
        (["--route", "a=@0", "--mock", "{garbage}"], "not a zstd-compressed replaydiff file"),
        (["--route", "a=@0", "--mock", "{missing}"], "no such file"),
        (["--route", "a=@0", "--mock", "{log}", "--mock-corpus", "{garbage}"], "--mock-corpus: "),
        (["--route", "a=@0", "--mock", "{log}", "--mock-corpus", "{log}"], "expected replaydiff-corpus/1"),
        (["--route", "a=http://127.0.0.1:9", "--mock-corpus", "{log}"], "--mock-corpus "),
        (["--route", "a=http://127.0.0.1:9", "--ca-cert", "{garbage}"], "not a readable PEM bundle"),
    ],
)
def test_bad_mock_input_is_one_line_and_exit_2(tmp_path: Path, arguments: list[str], message: str) -> None:
    log, garbage = tmp_path / "up.jsonl.zst", tmp_path / "garbage.jsonl.zst"
    with UpstreamLogWriter(log) as writer:
        writer.write(_call(1, "GET", "/stock/1", None, {"n": 1}))
    garbage.write_text("not a log\n")
    paths = {"log": log, "garbage": garbage, "missing": tmp_path / "nope.jsonl.zst"}
    result = subprocess.run(
        [*REPLAYDIFF, "tap", *(a.format(**paths) for a in arguments), "-o", str(tmp_path / "o.zst"),
         "--confdir", str(tmp_path / "conf")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_untraced_recorded_calls_answer_within_the_exchange_they_are_attributed_to_by_time(tmp_path: Path) -> None:
    """The same request answered differently in two exchanges, recorded without trace ids: with the corpus, each
    exchange gets its own answer (flagged by_time); without it, or without the corpus's clock, the first."""
    epoch = 1_700_000_000_000_000
    corpus, clockless, log = tmp_path / "c.jsonl.zst", tmp_path / "old.jsonl.zst", tmp_path / "up.jsonl.zst"
    for path, end in ((corpus, {"epoch_unix_us": epoch}), (clockless, {})):
        with CorpusWriter(path) as writer:
            for number, start in ((1, 0), (2, 200)):
                writer.write(Exchange(f"x{number}", "s", start, Request("GET", "http", "shop", 80, "/"), None,
                                      duration_us=100, tags={TRACE_TAG: _trace(number)}))  # fmt: skip
            writer.close(**end)
    with UpstreamLogWriter(log) as writer:
        for number, at in ((1, 50), (2, 250)):
            writer.write(replace(_call(number, "GET", "/stock/1", None, {"n": number}), trace_id="",
                                 start_us=epoch + at))  # fmt: skip
    attributed = MockRecording.load(log, corpus=corpus)
    for number in (1, 2):
        match = _ask(attributed, number, 0, "GET", "/stock/1")
        assert (match.how, match.by_time) == ("exact", True) and match.answer is not None
        assert json.loads(match.answer.body) == {"n": number}
    with pytest.warns(Warning, match="does not say when it was recorded"):
        unattributed = MockRecording.load(log, corpus=clockless)
    for recording in (unattributed, MockRecording.load(log)):
        match = _ask(recording, 2, 0, "GET", "/stock/1")
        assert match.how == "corpus" and match.answer is not None and json.loads(match.answer.body) == {"n": 1}
