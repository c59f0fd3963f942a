"""The demo under the tap's seeded faults: retry and timeout divergences found in 10 of 10 runs, nothing else.

The candidate retries inventory three times without backoff (the baseline once, after 50 ms) and gives up
on a slow reservation after 150 ms. Fault decisions depend only on the seed, the exchange and the call's
ordinal, so every run meets the same faults; what may vary is timing, which must not change the verdict.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from replaydiff.commands.demo import DEMO_RULES
from replaydiff.demo.services import PLANTED
from replaydiff.demo.system import DEMO_FAULTS, DemoSystem

REPLAYDIFF = [sys.executable, "-m", "replaydiff.cli"]
ROOT = Path(__file__).parent.parent
ENDPOINTS = ("GET /api/products/{id}", "POST /api/cart/quote", "POST /api/checkout")


@pytest.mark.slow
@pytest.mark.parametrize("repetitions", [4, pytest.param(10, marks=pytest.mark.exhaustive)])
def test_retry_and_timeout_divergences_in_every_run(tmp_path: Path, repetitions: int) -> None:
    """Four runs in `make test` (about 35 s on two cores: the suite's 15-minute budget), ten with
    `pytest -m exhaustive`."""
    expected = {f for f in PLANTED if f.split("|")[0] in ENDPOINTS and f.split("|")[1] != "latency"}
    assert {f.split("|")[1] for f in expected} >= {"retry", "upstream"}
    outcomes = []
    with DemoSystem(faults=DEMO_FAULTS) as demo:
        assert demo.upstream_log is not None
        for repetition in range(repetitions):
            report = tmp_path / f"report-{repetition}.json"
            result = subprocess.run(
                [*REPLAYDIFF, "run", "replaydiff/demo/demo-shop.jsonl.zst", "--baseline", demo.baseline,
                 "--candidate", demo.candidate, "--concurrency", "16", "--upstream-log", str(demo.upstream_log),
                 "--rules", str(DEMO_RULES), "-o", str(tmp_path / f"r-{repetition}.jsonl.zst"), "--json", str(report),
                 *(arg for endpoint in ENDPOINTS for arg in ("--filter", endpoint))],
                capture_output=True, text=True, timeout=300, cwd=ROOT,
            )  # fmt: skip
            assert result.returncode == 1, result.stderr[-2000:]
            found = {d["fingerprint"] for d in json.loads(report.read_text())["divergences"]}
            outcomes.append({f for f in found if f.split("|")[1] != "latency"})
    assert all(found == expected for found in outcomes), [sorted(f ^ expected) for f in outcomes]
