"""What minimization keeps, measured on a real third-party application: Datasette 0.65.5 → 1.0a19.

Datasette's 1.0 alphas reshape its JSON API (rows become objects, `ok` and `next` appear, `columns` and
the table metadata go), while `?_shape=array` answers stay the same. Both versions are installed from
PyPI into cached virtual environments outside the repository (~/.cache/replaydiff-apps), serve the same
SQLite file, and a corpus of browsing sessions is taken from the baseline's real answers. A corpus
minimized ten times must show every divergence the full corpus shows, and replayed A/A, none. Latency is
left out here (`--latency-abs-ms 100000`): the two releases' speeds differ by a few milliseconds, which a busy
test machine turns into a borderline result either way; tests/test_curation_demo.py measures latency on
planted shifts.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from replaydiff.corpora import CorpusReader, CorpusWriter, Exchange, Request, Response

from tests.apps import AppUnavailable
from tests.realapp import datasette
from tests.test_curation_demo import REDUCTION, _fingerprints, _untested

REPLAYDIFF = [sys.executable, "-m", "replaydiff.cli"]
BASELINE, CANDIDATE = "0.65.5", "1.0a19"
CATEGORIES = ("books", "garden", "kitchen", "toys", "coffee")
START_TIMEOUT_S = 30.0


def _datasette(version: str) -> Path:
    """The `datasette` executable of `version`, from the one cached installer the real-app tests share."""
    try:
        return datasette(version)
    except AppUnavailable as exc:
        pytest.skip(str(exc))


@contextmanager
def _serving(executable: Path, database: Path, log: Path) -> Iterator[str]:
    with open(log, "w") as sink:
        process = subprocess.Popen([str(executable), "serve", str(database), "-h", "127.0.0.1", "-p", "0"],
                                   stdout=sink, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (found := re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)  # polling for the start line, not waiting a fixed time
        yield found[1]
    finally:
        process.terminate()
        process.wait(10)


def _database(path: Path) -> Path:
    rng = random.Random(1)
    with sqlite3.connect(path) as db:
        db.execute("create table products (id integer primary key, name text, category text, price real, stock int)")
        db.executemany("insert into products values (?, ?, ?, ?, ?)", [
            (i, f"item {i}", rng.choice(CATEGORIES), round(rng.uniform(1, 100), 2), rng.randint(0, 50))
            for i in range(1, 201)
        ])  # fmt: skip
    return path


def _journey(rng: random.Random, number: int) -> list[str]:
    """A visitor: the database page, listings by category and price, a few product pages; rare options rarely."""
    targets = ["/shop.json"]
    for _ in range(rng.randint(3, 8)):
        query = f"_size={rng.choice((10, 20))}&category={rng.choice(CATEGORIES)}"
        if rng.random() < 0.3:
            query += "&_sort=price"
        targets.append(f"/shop/products.json?{query}")
        if rng.random() < 0.5:
            targets.append(f"/shop/products/{rng.randint(1, 3)}.json")
    if rng.random() < 0.1:
        targets.append("/shop/products.json?_shape=array&_size=5")
    if number % 60 == 7:  # rare: a facet, another shape, a missing table
        targets += ["/shop/products.json?_facet=category&_size=0", "/shop/products.json?_shape=objects&_size=3",
                    "/shop/nope.json"]  # fmt: skip
    return targets


def _record(base: str, path: Path, sessions: int) -> Path:
    """The baseline's real answers to every visitor's requests, as a recorder would have written them."""
    rng = random.Random(18)
    number = 0
    with httpx.Client(base_url=base) as client, CorpusWriter(path, source="test: datasette browsing") as writer:
        for session in range(sessions):
            for step, target in enumerate(_journey(rng, session)):
                started = time.perf_counter()
                answer = client.get(target)
                path_, _, query = target.partition("?")
                writer.write(Exchange(
                    id=f"x{number}", session=f"visitor-{session}", start_us=session * 200_000 + step * 20_000,
                    duration_us=int((time.perf_counter() - started) * 1e6),
                    request=Request("GET", "http", "127.0.0.1", 80, path_, query=query,
                                    headers=[("Host", "datasette.internal"), ("Accept", "application/json")]),
                    response=Response(answer.status_code, headers=list(answer.headers.items()), body=answer.content),
                ))  # fmt: skip
                number += 1
    return path


def _run(corpus: Path, baseline: str, candidate: str, out: Path) -> tuple[int, dict[str, Any]]:
    report = out.with_suffix(".json")
    result = subprocess.run(
        [*REPLAYDIFF, "run", str(corpus), "--baseline", baseline, "--candidate", candidate, "--rate", "150",
         "--latency-abs-ms", "100000", "-o", str(out), "--json", str(report)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return result.returncode, json.loads(report.read_text())


@pytest.mark.slow
def test_datasette_minimized_tenfold_finds_what_the_full_corpus_finds(tmp_path: Path) -> None:
    old, new = _datasette(BASELINE), _datasette(CANDIDATE)
    database = _database(tmp_path / "shop.db")
    with _serving(old, database, tmp_path / "old.log") as baseline, _serving(new, database, tmp_path / "new.log") as candidate:
        full = _record(baseline, tmp_path / "browsing.jsonl.zst", sessions=180)
        total = CorpusReader(full).count()
        minimized = tmp_path / "nightly.jsonl.zst"
        result = subprocess.run(
            [*REPLAYDIFF, "corpus", "minimize", str(full), "-o", str(minimized), "--max-exchanges", str(total // REDUCTION)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0 and "(100.0%)" in result.stdout, result.stdout + result.stderr
        assert CorpusReader(minimized).count() * REDUCTION <= total
        sampled = tmp_path / "sampled.jsonl.zst"  # the alternative: a random sample of as many sessions
        sessions = len({e.session for e in CorpusReader(minimized)})
        assert subprocess.run([*REPLAYDIFF, "corpus", "sample", str(full), "-o", str(sampled), "--sessions",
                               str(sessions)], capture_output=True, timeout=120).returncode == 0  # fmt: skip
        stats = subprocess.run([*REPLAYDIFF, "corpus", "stats", str(sampled), "--against", str(full), "--json"],
                               capture_output=True, text=True, timeout=120)  # fmt: skip
        against = json.loads(stats.stdout)["against"]
        assert against["kept"] < against["items"], against  # misses what minimize keeps
        _, full_report = _run(full, baseline, candidate, tmp_path / "full.jsonl.zst")
        _, small_report = _run(minimized, baseline, candidate, tmp_path / "small.jsonl.zst")
        aa_code, aa_report = _run(minimized, baseline, baseline, tmp_path / "aa.jsonl.zst")
    found, kept = _fingerprints(full_report), _fingerprints(small_report)
    print(result.stdout, result.stderr, f"full corpus ({total}): {sorted(found)}", f"minimized: {sorted(kept)}",
          f"a sample of {sessions} sessions lacks: {against['missing']}", sep="\n")  # fmt: skip
    assert len(found) >= 5, found
    assert kept <= found
    for fingerprint in found - kept:
        assert "|latency|" in fingerprint and _untested(small_report, fingerprint), (fingerprint, kept)
    assert aa_code == 0 and not aa_report["divergences"], aa_report["divergences"]
