"""`replaydiff demo --mock`: the demo with no inventory service, answered from the shipped recording."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from replaydiff.corpora import CorpusReader
from replaydiff.demo.samples import sample_path
from replaydiff.demo.services import PLANTED
from replaydiff.demo.system import DEMO_UPSTREAM, DemoSystem
from replaydiff.mocking import recording_fit, upstream_attachment

REPLAYDIFF = [sys.executable, "-m", "replaydiff.cli"]
CALLING_INVENTORY = ("/api/cart/quote", "/api/checkout")


def test_the_shipped_recording_covers_every_exchange_of_the_bundled_corpus_that_calls_inventory() -> None:
    corpus = sample_path("demo-shop")
    calling = sum(
        1
        for exchange in CorpusReader(corpus)
        if exchange.response is not None
        and exchange.response.status < 400
        and (exchange.request.path.rstrip("/").count("/") == 3 and exchange.request.path.startswith("/api/products/")
             or exchange.request.path in CALLING_INVENTORY)
    )  # fmt: skip
    found, total = recording_fit(corpus, DEMO_UPSTREAM)
    assert found >= calling and total == 3421
    assert set(upstream_attachment(corpus, DEMO_UPSTREAM).calls["inventory"]) == {"by trace id"}


def test_the_mocked_demo_system_runs_no_inventory_and_answers_from_the_recording() -> None:
    with DemoSystem(mock=DEMO_UPSTREAM) as system:
        assert system.inventory == ""  # nothing to call: the shops' inventory URL is the mock's
        answer = httpx.get(f"{system.baseline}/api/products/7", timeout=10)
        assert answer.status_code == 200 and set(answer.json()["stock"]) == {"available", "warehouse"}
    assert "mock: corpus 1" in system.tap_farewell  # no trace id: the recording-wide match


def _demo(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:  # type: ignore[type-arg]
    report = tmp_path / "report.json"
    result = subprocess.run(
        # speed 4, as the A/A demo test: half the time of the default 2 (the suite's 15 minutes), and more load
        [*REPLAYDIFF, "demo", "--mock", "--speed", "4", "--json", str(report), "-o", str(tmp_path / "r.jsonl.zst"),
         *extra],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return result, json.loads(report.read_text()) if report.exists() else {}


def test_demo_mock_reports_the_same_planted_divergences(tmp_path: Path) -> None:
    result, report = _demo(tmp_path)
    assert "inventory mocked from demo-shop.upstream.jsonl.zst" in result.stderr
    assert "Traceback" not in result.stderr
    found = {group["fingerprint"] for group in report["divergences"]}
    assert found == PLANTED, (sorted(found - PLANTED), sorted(PLANTED - found))
    assert result.returncode == 0, result.stderr[-2000:]


def test_demo_mock_aa_reports_nothing(tmp_path: Path) -> None:
    result, report = _demo(tmp_path, "--aa")
    assert report["divergences"] == [], [group["fingerprint"] for group in report["divergences"]]
    assert result.returncode == 0, result.stderr[-2000:]
