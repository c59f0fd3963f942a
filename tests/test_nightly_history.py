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
from replaydiff.nightly.classify import PastRun, judge_divergences, parse_fail_statuses, status
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


def _nights(*shown: bool) -> list[PastRun]:
    """Past runs on consecutive nights from Nov 1st, showing the price divergence or not."""
    return [PastRun(f"2026-11-{day:02d}T03:00:00+00:00", frozenset({PRICE} if on else ()))
            for day, on in enumerate(shown, start=1)]


@pytest.mark.parametrize(
    ("past", "accepted", "fail_on", "judged"),
    [
        ([], {}, "new,known", ("new", True, "2026-11-28", 1)),
        (_nights(False, True, True), {}, "new,known", ("known", True, "2026-11-02", 3)),  # red until someone acts
        (_nights(False, True, True), {}, "new", ("known", False, "2026-11-02", 3)),  # the old policy, on request
        (_nights(True, False, True), {}, "new,known", ("intermittent", False, "2026-11-03", 2)),  # shown, not red
        (_nights(True, False, True), {}, "intermittent", ("intermittent", True, "2026-11-03", 2)),
        (_nights(True, True), {PRICE: "on purpose"}, "new,known", ("accepted", False, "2026-11-01", 3)),
        (_nights(*[True] * 20), {}, "new,known", ("known", True, "2026-11-01", 21)),  # since: beyond the window
    ],
)
def test_a_divergence_fails_while_it_persists_unaccepted_and_says_since_when(
    tmp_path: Path, past: list[PastRun], accepted: dict[str, str], fail_on: str, judged: tuple[str, bool, str, int]
) -> None:
    [found] = judge_divergences(planted_report(tmp_path), past, accepted, tonight=NOW.isoformat(),
                                fail_statuses=parse_fail_statuses(fail_on))
    assert (found.status, found.fails, found.since[:10], found.nights) == judged


def test_a_kind_outside_the_suites_fail_on_never_fails(tmp_path: Path) -> None:
    [found] = judge_divergences(planted_report(tmp_path), _nights(True), {}, tonight=NOW.isoformat(),
                                fail_kinds={"status"})
    assert found.status == "known" and not found.fails


def test_fail_on_names_statuses_that_can_fail() -> None:
    assert parse_fail_statuses(" New, known ") == {"new", "known"}
    with pytest.raises(ValueError, match="accepted is not a status that can fail a night"):
        parse_fail_statuses("new,accepted")


def planted_report(tmp_path: Path) -> DiffReport:
    report = analyze(ResultsReader(write_results(tmp_path / "r.jsonl.zst", planted=True)))
    assert [group.fingerprint for group in report.divergences] == [PRICE]
    return report


def test_an_interrupted_run_is_never_compared_with(tmp_path: Path) -> None:
    report = planted_report(tmp_path)
    with History(tmp_path / "h.sqlite") as history:
        killed = history.start_run(suite=Path("s.toml"), directory=tmp_path, started=NOW)
        found = judge_divergences(report, [], {}, tonight=NOW.isoformat())
        history.record_entry(killed, "shop/x", outcome="ran", endpoints=report.endpoints, judged=found)
        # no finish_run: the process died here
        later = history.start_run(suite=Path("s.toml"), directory=tmp_path, started=NOW)
        assert history.past_runs("shop/x", before=later + 1, last=14) == []
        assert history.trends() == {}
        history.record_entry(later, "shop/x", outcome="ran", endpoints=report.endpoints, judged=found)
        history.finish_run(later, finished=NOW, exit_code=1, summary="…")
        assert history.past_runs("shop/x", before=later + 1, last=14) == [PastRun(NOW.isoformat(), frozenset({PRICE}))]
        [(key, points)] = history.trends().items()
    assert key == ("shop/x", "GET /products/{id}") and [p.run for p in points] == [later]
    assert points[0].verdict == "failing" and points[0].divergences == {PRICE: "new"}


def test_an_entry_is_recorded_whole_or_not_at_all(tmp_path: Path) -> None:
    report = planted_report(tmp_path)
    with History(tmp_path / "h.sqlite") as history:
        run = history.start_run(suite=Path("s.toml"), directory=tmp_path, started=NOW)
        twice = judge_divergences(report, [], {}, tonight=NOW.isoformat()) * 2  # the second insert of the same fingerprint violates the key
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            history.record_entry(run, "shop/x", outcome="ran", endpoints=report.endpoints, judged=twice)
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
