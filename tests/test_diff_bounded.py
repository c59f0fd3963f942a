"""Reports stay bounded and quick whatever the targets answered: 10,000 headers, megabyte values, huge bodies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from replaydiff.corpora import Attempt, ReplayRecord, Response, ResultsWriter
from replaydiff.diff.compare import ALL_HEADERS, MAX_HEADER_LOCATIONS, compare_headers
from replaydiff.diff.excerpt import response_text

REPLAYDIFF = Path(sys.executable).parent / "replaydiff"
TARGETS = {"baseline": "http://127.0.0.1:8001", "baseline2": "http://127.0.0.1:8002", "candidate": "http://127.0.0.1:8003"}


def _headers(count: int, version: str) -> list[tuple[str, str]]:
    return [(f"X-H{i}", f"{i}-{version}") for i in range(count)]


def test_many_header_changes_on_one_exchange_are_one_divergence_with_counts() -> None:
    left = _headers(10_000, "a") + [("X-Gone", "1")]
    right = _headers(10_000, "b") + [("X-New", "1"), ("X-Newer", "2")]
    (difference,) = compare_headers(left, right)
    assert difference.location == ALL_HEADERS
    assert difference.left is not None and difference.left.startswith("10003 headers differ (10000 changed, 1 only here")
    assert difference.right is not None and difference.right.startswith("10003 headers differ (10000 changed, 2 only here")


def test_a_few_header_changes_keep_a_place_each() -> None:
    count = MAX_HEADER_LOCATIONS
    assert [d.location for d in compare_headers(_headers(count, "a"), _headers(count, "b"))] == sorted(
        f"x-h{i}" for i in range(count)
    )


def test_an_answer_shown_for_reading_is_bounded_whatever_its_headers() -> None:
    text = response_text(200, "OK", _headers(10_000, "a") + [("X-Huge", "h" * (1 << 20))], b"{}")
    assert len(text) < 20_000
    assert "… and 9941 more headers" in text


def test_the_json_report_of_twenty_answers_with_ten_thousand_headers_is_small(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl.zst"
    with ResultsWriter(results, corpus="c", mode="rate", targets=TARGETS) as writer:
        for n in range(20):
            for target in TARGETS:
                version = "new" if target == "candidate" else "old"
                response = Response(200, "OK", headers=_headers(10_000, version), body=b'{"ok": true}')
                attempt = Attempt(sent_us=n * 1000, ttfb_us=900, duration_us=1000, status=200)
                writer.write(ReplayRecord(f"ex{n}", target, "GET /items/{id}", [attempt], response))
    report = tmp_path / "report.json"
    done = subprocess.run(
        [REPLAYDIFF, "diff", results, "--json", report], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 1, done.stderr
    assert report.stat().st_size < 2 * 1024 * 1024, "a few MB at most"
    (divergence,) = json.loads(report.read_text())["divergences"]
    assert divergence["fingerprint"] == "GET /items/{id}|header|*"
    assert divergence["count"] == 20


def test_bodies_above_the_cap_compare_by_digest_not_by_their_kept_prefix() -> None:
    from replaydiff.diff.compare import compare_bodies

    def cut(digest: str) -> Response:
        return Response(200, body=b"a" * 1000, body_size=50_000_000, body_digest=digest)

    assert compare_bodies(cut("sha256:" + "1" * 64), cut("sha256:" + "1" * 64)) == []
    (difference,) = compare_bodies(cut("sha256:" + "1" * 64), cut("sha256:" + "2" * 64))
    assert difference.left is not None and difference.left.startswith("<50000000 bytes, sha256:111111111111>")
    assert difference.right is not None and "sha256:222222222222" in difference.right
