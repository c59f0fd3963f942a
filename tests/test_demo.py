"""End to end on the bundled demo: the planted divergences are found, an A/A run finds nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from replaydiff.commands.demo import PLANTED

REPLAYDIFF = [sys.executable, "-m", "replaydiff.cli"]


def _demo(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    report = tmp_path / "report.json"
    result = subprocess.run(
        [*REPLAYDIFF, "demo", "--json", str(report), "-o", str(tmp_path / "r.jsonl.zst"), *extra],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    return result, json.loads(report.read_text()) if report.exists() else {}


def test_demo_reports_exactly_the_planted_divergences(tmp_path: Path) -> None:
    result, report = _demo(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["verdict"] == "divergent"
    found = {(d["fingerprint"], d["kind"]) for d in report["divergences"]}
    assert found == {(fp, fp.split("|")[1]) for fp in PLANTED}
    assert report["totals"]["exchanges"] >= 2000
    # volatile values were seen and suppressed, never reported
    suppressed = {s["location"] for s in report["suppressed"]}
    assert {"$.generated_at", "$.request_id", "x-request-id"} <= suppressed
    assert "DIVERGENT" in result.stdout


def test_demo_aa_reports_nothing(tmp_path: Path) -> None:
    result, report = _demo(tmp_path, "--aa")
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["verdict"] == "same"
    assert report["divergences"] == []
    assert "SAME" in result.stdout


def test_run_replays_and_diffs_with_exit_code_1_on_divergence(tmp_path: Path) -> None:
    from replaydiff.demo.system import DemoSystem

    with DemoSystem() as system:
        result = subprocess.run(
            [*REPLAYDIFF, "run", "corpora/samples/demo-shop.jsonl.zst", "--baseline", system.baseline,
             "--candidate", system.candidate, "--concurrency", "32", "--limit", "600",
             "-o", str(tmp_path / "r.jsonl.zst"), "--json", str(tmp_path / "report.json")],
            capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent,
        )
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    fingerprints = {d["fingerprint"] for d in report["divergences"]}
    assert "GET /api/products/{id}|body|$.price" in fingerprints
    assert fingerprints <= PLANTED
