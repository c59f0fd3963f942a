"""The nightly's decisions and its database, without replays: statuses, transactions, accepted-divergence files."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from replaydiff.corpora import ResultsReader
from replaydiff.diff.analysis import analyze
from replaydiff.diff.findings import DiffReport
from replaydiff.errors import UserError
from replaydiff.nightly.accepted import load_accepted
from replaydiff.nightly.classify import status, verdicts
from replaydiff.nightly.history import History
from tests.test_diff_cli import write_results

PRICE = "GET /products/{id}|body|$.price"
NOW = datetime(2026, 11, 28, 3, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("past", "accepted", "expected"),
    [
        ([], set(), "new"),
        ([{"x"}, {"x"}], set(), "new"),
        ([{PRICE}, {PRICE}], set(), "known"),
        ([set(), {PRICE}], set(), "known"),
        ([{PRICE}, set()], set(), "intermittent"),
        ([{PRICE}, set(), {PRICE}], set(), "intermittent"),
        ([], {PRICE}, "accepted"),
        ([{PRICE}, set()], {PRICE}, "accepted"),
    ],
)
def test_status_of_a_divergence(past: list[set[str]], accepted: set[str], expected: str) -> None:
    assert status(PRICE, past, accepted) == expected


def planted_report(tmp_path: Path) -> DiffReport:
    report = analyze(ResultsReader(write_results(tmp_path / "r.jsonl.zst", planted=True)))
    assert [group.fingerprint for group in report.divergences] == [PRICE]
    return report


def test_an_interrupted_run_is_never_compared_with(tmp_path: Path) -> None:
    report = planted_report(tmp_path)
    with History(tmp_path / "h.sqlite") as history:
        killed = history.start_run(suite=Path("s.toml"), directory=tmp_path, started=NOW)
        found = verdicts(report, [], {}, None)
        history.record_entry(killed, "shop/x", outcome="ran", endpoints=report.endpoints, verdicts=found)
        # no finish_run: the process died here
        later = history.start_run(suite=Path("s.toml"), directory=tmp_path, started=NOW)
        assert history.past_fingerprints("shop/x", before=later + 1, window=14) == []
        assert history.trends() == {}
        history.record_entry(later, "shop/x", outcome="ran", endpoints=report.endpoints, verdicts=found)
        history.finish_run(later, finished=NOW, exit_code=1, summary="…")
        assert history.past_fingerprints("shop/x", before=later + 1, window=14) == [frozenset({PRICE})]
        [(key, points)] = history.trends().items()
    assert key == ("shop/x", "GET /products/{id}") and [p.run for p in points] == [later]
    assert points[0].verdict == "failing" and points[0].divergences == {PRICE: "new"}


def test_an_entry_is_recorded_whole_or_not_at_all(tmp_path: Path) -> None:
    report = planted_report(tmp_path)
    with History(tmp_path / "h.sqlite") as history:
        run = history.start_run(suite=Path("s.toml"), directory=tmp_path, started=NOW)
        twice = verdicts(report, [], {}, None) * 2  # the second insert of the same fingerprint violates the key
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            history.record_entry(run, "shop/x", outcome="ran", endpoints=report.endpoints, verdicts=twice)
        history.finish_run(run, finished=NOW, exit_code=1, summary="…")
        assert history.trends() == {}, "the entry's endpoints were rolled back with its divergences"


def test_accepted_file(tmp_path: Path) -> None:
    good = tmp_path / "accepted.toml"
    good.write_text(f'[[accepted]]\nfingerprint = "{PRICE}"\nreason = "prices are strings now (SHOP-1)"\n')
    assert load_accepted(good) == {PRICE: "prices are strings now (SHOP-1)"}
    bad = tmp_path / "bad.toml"
    bad.write_text('[[accepted]]\nfingerprint = "GET /x|bodies|$.y"\nreason = "r"\n')
    with pytest.raises(UserError, match=r"bad.toml: accepted 1: 'GET /x\|bodies\|\$.y' is not a fingerprint"):
        load_accepted(bad)
