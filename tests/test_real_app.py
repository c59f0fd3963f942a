"""A real upgrade of a real application: Datasette 0.64.8 → 1.0a41 from PyPI, traffic recorded through the recorder.

Bounded (240 requests; about a minute on two cores): the full-size figures
come from `bench/real_app_report.py` (500 requests). Skips only when the
application cannot be installed (no package registry).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests import realapp
from tests.apps import AppUnavailable

REQUESTS = 240
PROCESS_STATE_RULES = """
# /-/threads.json lists the serving process's own threads and asyncio tasks: per-process state, not an answer of the
# application. Resends cannot tell it from a change: one process can trail another by a task number on every resend.
[[rule]]
endpoint = "GET /-/threads.json"
path = "$"
ignore = true
"""
RECORD_NAME = re.compile(r"/\d+(\.|/|$)|/[a-z]+-[a-z]+(\.|/|$)")
"""An endpoint that names one record: a number or a subject slug as a segment of its own."""


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    try:
        for version in (realapp.OLD, realapp.NEW):
            realapp.datasette(version)
    except AppUnavailable as exc:
        pytest.skip(str(exc))
    scratch = tmp_path_factory.mktemp("datasette")
    db = realapp.library_db(scratch / "library.db")
    corpus = scratch / "library.jsonl.zst"
    rules = scratch / "rules.toml"
    rules.write_text(PROCESS_STATE_RULES)
    with realapp.serving(realapp.OLD, db) as recorded:
        realapp.record(recorded, corpus, realapp.traffic(REQUESTS))
    with (  # three processes of the old version: the A/A candidate shares no per-process state with a baseline
        realapp.serving(realapp.OLD, db) as old,
        realapp.serving(realapp.OLD, db) as old2,
        realapp.serving(realapp.OLD, db) as old3,
        realapp.serving(realapp.NEW, db) as new,
    ):
        aa = realapp.run(corpus, old, old2, old3, scratch / "aa", "--rules", str(rules))
        ab = realapp.run(corpus, old, old2, new, scratch / "ab", "--rules", str(rules))
    yield {"scratch": scratch, "aa": aa, "ab": ab}


@pytest.mark.slow
def test_an_aa_replay_of_the_real_application_is_clean(upgrade: dict[str, Any]) -> None:
    aa = upgrade["aa"]
    assert aa.returncode == 0, aa.stdout + aa.stderr
    report = json.loads((upgrade["scratch"] / "aa.json").read_text())
    assert not report["failed"]
    assert report["divergences"] == [] and report["verdict"] == "same"


@pytest.mark.slow
def test_the_upgrade_report_is_a_few_findings_on_one_screen(upgrade: dict[str, Any]) -> None:
    ab = upgrade["ab"]
    assert ab.returncode == 1, ab.stdout + ab.stderr
    report = json.loads((upgrade["scratch"] / "ab.json").read_text())
    findings = report["findings"]
    assert 3 <= len(findings) <= 20
    # every divergence is in exactly one finding
    members = [fingerprint for finding in findings for fingerprint in finding["fingerprints"]]
    assert sorted(members) == sorted(d["fingerprint"] for d in report["divergences"])
    # no endpoint names a single record: ids inside segments and subject slugs were learned as parameters
    endpoints = [e["endpoint"] for e in report["endpoints"]]
    assert [e for e in endpoints if RECORD_NAME.search(e)] == []
    assert {"GET /library/books/{id}.json", "GET /library/subjects/{name}.json"} <= set(endpoints)
    # the table JSON redesign is one finding over the table endpoints, listing the keys it lost
    [tables] = [f for f in findings if "GET /library/books.json" in f["endpoints"] and f["kind"] == "body"]
    assert "GET /library/authors.json" in tables["endpoints"] and tables["title"].startswith("JSON lost ")
    assert {"$.database", "$.columns"} <= set(tables["changes"]["removed"]) and "$.ok" in tables["changes"]["added"]
    # the row JSON redesign, on every row endpoint, is another
    [rows] = [f for f in findings if "GET /library/books/{id}.json" in f["endpoints"] and f["kind"] == "body"]
    assert "GET /library/authors/{id}.json" in rows["endpoints"]
    # SQL queries on the database JSON now redirect
    assert any(f["title"] == "status 200 → 302 on GET /library.json" for f in findings)
    # the debug thread list, once in the traffic: resent to every target, the candidate's 403 is confirmed
    [threads] = [f for f in findings if f["endpoints"] == ["GET /-/threads.json"]]
    assert (threads["title"], threads["confirmation"]) == ("status 200 → 403 on GET /-/threads.json", "confirmed")
    assert report["confirm_times"] == 3
    assert len(ab.stdout.splitlines()) <= 100
    assert (upgrade["scratch"] / "ab.html").stat().st_size < 1_500_000
