"""`replaydiff diff` as a user runs it: a real results file, a subprocess, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from replaydiff.corpora import Attempt, CorpusWriter, ReplayRecord, Response, ResultsWriter

REPLAYDIFF = Path(sys.executable).parent / "replaydiff"
TARGETS = {
    "baseline": "http://127.0.0.1:8001",
    "baseline2": "http://127.0.0.1:8002",
    "candidate": "http://127.0.0.1:8003",
}


def write_results(path: Path, *, exchanges: int = 40, planted: bool = False, targets: dict[str, str] = TARGETS) -> Path:
    """Every answer carries its own timestamp and request id; `planted` turns every other price into a string."""
    with ResultsWriter(path, corpus="shop", mode="rate", targets=targets) as writer:
        for n in range(exchanges):
            for role_number, target in enumerate(targets):
                price: object = "9.5" if planted and target == "candidate" and n % 2 else 9.5
                body = {"id": n, "price": price, "generated_at": f"2024-05-01T10:00:{n:02}.{role_number}"}
                response = Response(
                    200, "OK", headers=[("X-Request-Id", f"{target}-{n}")], body=json.dumps(body).encode()
                )
                attempt = Attempt(sent_us=n * 1000, ttfb_us=900, duration_us=1000 + role_number, status=200)
                writer.write(ReplayRecord(f"ex{n}", target, "GET /products/{id}", [attempt], response))
    return path


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([REPLAYDIFF, "diff", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_an_aa_replay_is_the_same(tmp_path: Path) -> None:
    result = run(write_results(tmp_path / "aa.jsonl.zst"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("SAME  no divergences on 1 endpoint · 40 exchanges compared")
    assert "$.generated_at (body) on 1 endpoint" in result.stdout


def test_a_planted_divergence_exits_1_and_is_in_the_json_report(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = run(write_results(tmp_path / "ab.jsonl.zst", planted=True), "--json", report, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("DIVERGENT")
    data = json.loads(report.read_text())
    assert data["schema"] == "replaydiff-diff/3"
    [divergence] = data["divergences"]
    assert divergence["fingerprint"] == "GET /products/{id}|body|$.price"
    assert (divergence["count"], divergence["total"]) == (20, 40)
    assert divergence["examples"][0]["baseline"] == "9.5" and divergence["examples"][0]["candidate"] == '"9.5"'


def test_without_baseline2_every_difference_is_reported_with_a_warning(tmp_path: Path) -> None:
    pair = {"baseline": TARGETS["baseline"], "candidate": TARGETS["candidate"]}
    result = run(write_results(tmp_path / "ab.jsonl.zst", targets=pair), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "no baseline2 records: noise was not learned" in result.stdout


def assert_one_line_error(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("replaydiff: error: ")
    for text in expected:
        assert text in line


def test_input_errors_are_one_line_with_exit_code_2(tmp_path: Path) -> None:
    assert_one_line_error(run(tmp_path / "missing.jsonl.zst", cwd=tmp_path), "missing.jsonl.zst", "no such file")
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert_one_line_error(run(text, cwd=tmp_path), "notes.txt", "not a zstd-compressed replaydiff file")
    with CorpusWriter(tmp_path / "corpus.jsonl.zst", source="test"):
        pass
    assert_one_line_error(run(tmp_path / "corpus.jsonl.zst", cwd=tmp_path), "replaydiff-corpus/1 file")
    assert_one_line_error(
        run(write_results(tmp_path / "empty.jsonl.zst", exchanges=0), cwd=tmp_path), "nothing to compare", "0 exchanges"
    )


def test_fail_on_chooses_which_kinds_fail_the_run(tmp_path: Path) -> None:
    results = write_results(tmp_path / "ab.jsonl.zst", planted=True)
    report = tmp_path / "report.json"
    passing = run(results, "--fail-on", "status,latency", "--json", report, cwd=tmp_path)
    assert passing.returncode == 0, passing.stderr
    assert "DIVERGENT" in passing.stdout and "1 of the divergences do not fail the run" in passing.stdout
    data = json.loads(report.read_text())
    assert (data["verdict"], data["failed"], data["fail_on"]) == ("divergent", False, ["latency", "status"])
    assert run(results, "--fail-on", "body", cwd=tmp_path).returncode == 1
    bad = run(results, "--fail-on", "bodies", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown kind 'bodies'" in bad.stderr


def test_rules_change_the_verdict_and_a_bad_rules_file_is_one_line(tmp_path: Path) -> None:
    results = write_results(tmp_path / "ab.jsonl.zst", planted=True)
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nendpoint = "GET /products/*"\npath = "$.price"\nignore = true\n')
    assert run(results, "--rules", rules, cwd=tmp_path).returncode == 0
    rules.write_text('[[rule]]\npath = "$.price"\nignor = true\n')
    assert_one_line_error(run(results, "--rules", rules, cwd=tmp_path), "rules.toml: rule 1: unknown key 'ignor'")
    assert_one_line_error(run(results, "--rules", tmp_path / "nope.toml", cwd=tmp_path), "nope.toml", "cannot read")


def test_an_openapi_file_names_the_endpoints(tmp_path: Path) -> None:
    spec = tmp_path / "api.yaml"
    spec.write_text("openapi: 3.0.0\npaths:\n  /products/{productId}:\n    get: {}\n")
    report = tmp_path / "report.json"
    result = run(write_results(tmp_path / "aa.jsonl.zst"), "--openapi", spec, "--json", report, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [e["endpoint"] for e in json.loads(report.read_text())["endpoints"]] == ["GET /products/{productId}"]
    spec.write_text("paths: [unclosed\n")
    assert_one_line_error(run(tmp_path / "aa.jsonl.zst", "--openapi", spec, cwd=tmp_path), "api.yaml: not valid YAML")


def test_junit_and_html_reports_are_written(tmp_path: Path) -> None:
    results = write_results(tmp_path / "ab.jsonl.zst", planted=True)
    result = run(results, "--junit", tmp_path / "r.xml", "--html", tmp_path / "r.html", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert '<testcase classname="replaydiff.endpoints" name="GET /products/{id}">' in (tmp_path / "r.xml").read_text()
    assert "GET /products/{id}|body|$.price" in (tmp_path / "r.html").read_text()
    unwritable = run(results, "--html", tmp_path / "missing-dir" / "r.html", cwd=tmp_path)
    assert_one_line_error(unwritable, "r.html: cannot write the HTML report")
