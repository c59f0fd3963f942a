"""What minimization keeps, measured on the demo: a corpus ten times smaller finds what the full corpus finds.

The full bundled corpus and its minimized copy are replayed through the real demo system (without the tap's
faults, as `replaydiff run` is used in test_demo.py), and the minimized one A/A as well. Every divergence of
the full corpus that a kept exchange can show must be found again. A latency divergence is a statistic of
volume, not an exchange: the search's +30 ms on every call must be found again (minimize gives endpoints the
pairs the paired test needs), and a change the minimized replay cannot find must be one whose test it says did
not run for lack of samples (the listing's +200 ms on 3 % of calls needs about 330 calls of the endpoint for
ten slow ones, p < 0.001: more than a tenth of the corpus can hold). Never a silent "no regression".
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from replaydiff.commands.demo import DEMO_ACCOUNTS, DEMO_RULES
from replaydiff.corpora import CorpusReader
from replaydiff.diff.latency import LatencyThresholds
from replaydiff.demo.samples import sample_path

REPLAYDIFF = [sys.executable, "-m", "replaydiff.cli"]
REDUCTION = 10
TIMING = frozenset({"POST /api/checkout|status|"})
"""Follows the machine's load, not any request: the candidate's planted 0.15 s reservation timeout fires when
inventory answers slowly, which a busy test machine causes now and then, in either replay."""
SPARSE_NOISE = frozenset({"GET /api/products/{id}|body|$.promo"})
"""Volatile on both versions in one call in ten: the full corpus gives the noise rule enough pairs of baselines
that disagree on it; a corpus ten times smaller may not, and then shows it (the A/A run checks the rest)."""


def _run(corpus: Path, baseline: str, candidate: str, out: Path) -> tuple[int, dict[str, Any]]:
    report = out.with_suffix(".json")
    result = subprocess.run(
        [*REPLAYDIFF, "run", str(corpus), "--baseline", baseline, "--candidate", candidate, "--speed", "4",
         "--rules", str(DEMO_RULES), "--identities", str(DEMO_ACCOUNTS), "-o", str(out), "--json", str(report)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return result.returncode, json.loads(report.read_text())


def _fingerprints(report: dict[str, Any]) -> set[str]:
    return {d["fingerprint"] for d in report["divergences"]}


def _untested(report: dict[str, Any], fingerprint: str) -> bool:
    """The report says its latency test had too few samples to decide."""
    endpoint, kind, location = fingerprint.split("|")
    assert kind == "latency"
    stats = next(e for e in report["endpoints"] if e["endpoint"] == endpoint)
    if location == "p50":
        return stats["paired_latency"]["pairs"] < LatencyThresholds().min_pairs
    return stats["tail_latency"] is None


@pytest.mark.slow
def test_a_corpus_minimized_tenfold_finds_what_the_full_corpus_finds(tmp_path: Path) -> None:
    from replaydiff.demo.system import DemoSystem

    full = sample_path("demo-shop")
    total = CorpusReader(full).count()
    minimized = tmp_path / "nightly.jsonl.zst"
    result = subprocess.run(
        [*REPLAYDIFF, "corpus", "minimize", str(full), "-o", str(minimized), "--max-exchanges", str(total // REDUCTION)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "(100.0%)" in result.stdout  # every coverage item kept
    assert CorpusReader(minimized).count() * REDUCTION <= total
    with DemoSystem() as system:
        _, full_report = _run(full, system.baseline, system.candidate, tmp_path / "full.jsonl.zst")
        _, small_report = _run(minimized, system.baseline, system.candidate, tmp_path / "small.jsonl.zst")
        aa_code, aa_report = _run(minimized, system.baseline, system.baseline, tmp_path / "aa.jsonl.zst")
    found, kept = _fingerprints(full_report), _fingerprints(small_report)
    print(result.stdout, result.stderr, f"full corpus: {sorted(found)}", f"minimized: {sorted(kept)}", sep="\n")
    assert len(found - TIMING) >= 6, found
    assert kept - TIMING - SPARSE_NOISE <= found  # nothing the full corpus does not show
    for fingerprint in found - kept - TIMING:
        assert "|latency|" in fingerprint and _untested(small_report, fingerprint), (fingerprint, kept)
    assert {f for f in found - TIMING if "|latency|" not in f} <= kept
    assert "GET /api/search|latency|p50" in kept  # within the budget, the search got the pairs its test needs
    assert aa_code == 0 and not aa_report["divergences"]

