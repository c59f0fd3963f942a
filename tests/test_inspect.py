"""`replaydiff inspect` on the bundled corpus, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

from replaydiff.demo.samples import sample_path

REPLAYDIFF = [sys.executable, "-m", "replaydiff.cli"]


def test_inspect_shows_counts_sessions_endpoints_and_sanitizer() -> None:
    result = subprocess.run([*REPLAYDIFF, "inspect", str(sample_path("demo-shop"))], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "exchanges" in result.stdout and "sessions" in result.stdout
    assert "GET /api/products/{id}" in result.stdout
    assert "authorization ×" in result.stdout


def test_inspect_json_matches_the_corpus() -> None:
    result = subprocess.run(
        [*REPLAYDIFF, "inspect", "--json", str(sample_path("demo-shop"))], capture_output=True, text=True
    )
    stats = json.loads(result.stdout)
    assert stats["exchanges"] >= 2000
    assert stats["sessions"] >= 300
    assert len(stats["endpoints"]) >= 8
    assert sum(stats["endpoints"].values()) == stats["exchanges"]
    assert stats["complete"] is True


def test_inspect_missing_file_is_one_line_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = subprocess.run([*REPLAYDIFF, "inspect", str(tmp_path / "nope.jsonl.zst")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == f"replaydiff: error: {tmp_path / 'nope.jsonl.zst'}: no such file"
