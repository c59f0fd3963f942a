"""`replaydiff import` of mitmproxy flow files, input detection by content, and retry tagging."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mitmproxy import io
from mitmproxy.test import tflow

from replaydiff.corpora import CorpusReader, Exchange, Request, Response
from replaydiff.corpora.container import decompressed_bytes
from replaydiff.recorder.importing import detect_kind
from replaydiff.recorder.retries import RetryTagger

REPLAYDIFF = Path(sys.executable).with_name("replaydiff")


def run_import(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([REPLAYDIFF, "import", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_mitmproxy_flow_files_import_whatever_their_name(tmp_path: Path) -> None:
    first = tflow.tflow(resp=True)
    first.request.headers["Authorization"] = "Bearer flowsecret1"
    second = tflow.tflow(resp=True)
    second.request.path = "/second?token=flowsecret2"
    second.request.timestamp_start = first.request.timestamp_start + 2
    with open(tmp_path / "dump.bin", "wb") as out:
        writer = io.FlowWriter(out)
        for flow in (first, tflow.twebsocketflow(), tflow.ttcpflow(), second):
            writer.add(flow)
    assert detect_kind(tmp_path / "dump.bin") == "mitmproxy"
    result = run_import("dump.bin", "-o", "f.jsonl.zst", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "passed through: {'non_http_flows': 2}" in result.stderr
    reader = CorpusReader(tmp_path / "f.jsonl.zst")
    one, two = reader
    assert (one.request.path, one.start_us, two.request.path, two.start_us) == ("/path", 0, "/second", 2_000_000)
    assert dict(one.request.headers)["Authorization"].startswith("Bearer "), "pseudonymized, keeping the scheme word"
    assert reader.header["source"] == "mitmproxy:dump.bin"
    raw = decompressed_bytes(tmp_path / "f.jsonl.zst")
    assert b"flowsecret1" not in raw and b"flowsecret2" not in raw


def test_a_har_is_recognised_by_content_and_a_broken_flow_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "export.txt").write_text('\n  {"log": {"entries": []}}')
    assert detect_kind(tmp_path / "export.txt") == "har"
    (tmp_path / "broken.flows").write_bytes(b"12:not a flow,")
    result = run_import("broken.flows", "-o", "x.jsonl.zst", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("replaydiff: error: broken.flows: not a readable mitmproxy flow file")


# --- retries ------------------------------------------------------------------------------------


def exchange(number: int, start_s: float, status: int | None, *, path: str = "/pay", key: str = "") -> Exchange:
    """With an idempotency key, each attempt has its own path: only the key can tell it is a retry."""
    headers = [("Idempotency-Key", key)] if key else []
    path = f"/pay/{number}" if key else path
    request = Request("POST", "http", "shop", 80, path, headers=headers, body=b"{}")
    response = Response(status) if status else None
    return Exchange(f"e{number}", f"s{number}", round(start_s * 1e6), request, response, duration_us=100_000)


def tags(exchanges: list[Exchange], window_s: float = 5) -> list[dict[str, str]]:
    tagger = RetryTagger(window_s=window_s)
    return [tagger.tag(e).tags for e in exchanges]


def test_repeats_after_a_failure_within_the_window_are_tagged_with_the_first_attempt() -> None:
    assert tags([exchange(1, 0, 503), exchange(2, 1, None), exchange(3, 2.5, 200), exchange(4, 3, 200)]) == [
        {},
        {"retry_of": "e1", "attempt": "2"},
        {"retry_of": "e1", "attempt": "3"},
        {},
    ], "a success ends the chain; the same request again is new"


def test_no_retry_without_a_failure_outside_the_window_or_for_another_request() -> None:
    assert tags([exchange(1, 0, 200), exchange(2, 1, 200)]) == [{}, {}]
    assert tags([exchange(1, 0, 500), exchange(2, 9, 200)]) == [{}, {}]
    assert tags([exchange(1, 0, 429), exchange(2, 1, 200, path="/other")]) == [{}, {}]
    assert tags([exchange(1, 0, 500), exchange(2, 1, 200)], window_s=0) == [{}, {}]


def test_the_same_idempotency_key_marks_a_retry_even_when_the_request_differs() -> None:
    assert tags([exchange(1, 0, 408, key="k1"), exchange(2, 0.5, 201, key="k1"), exchange(3, 0.6, 201, key="k2")]) == [
        {},
        {"retry_of": "e1", "attempt": "2"},
        {},
    ]


def test_import_tags_retries_with_a_configurable_window(tmp_path: Path) -> None:
    def entry(second: int, status: int) -> dict[str, object]:
        return {
            "startedDateTime": f"2024-05-01T10:00:{second:02d}Z",
            "request": {"method": "GET", "url": "http://shop/items", "headers": []},
            "response": {"status": status, "headers": [], "content": {"text": ""}},
        }

    (tmp_path / "r.har").write_text(json.dumps({"log": {"entries": [entry(0, 502), entry(3, 200)]}}))
    assert run_import("r.har", "-o", "a.jsonl.zst", cwd=tmp_path).returncode == 0
    assert [e.tags for e in CorpusReader(tmp_path / "a.jsonl.zst")] == [{}, {"retry_of": "har000000", "attempt": "2"}]
    assert run_import("r.har", "-o", "b.jsonl.zst", "--retry-window", "1", cwd=tmp_path).returncode == 0
    assert [e.tags for e in CorpusReader(tmp_path / "b.jsonl.zst")] == [{}, {}]
