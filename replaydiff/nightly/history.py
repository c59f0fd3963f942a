"""The nightly history: every run, entry, endpoint verdict, divergence and latency percentiles, in SQLite.

Consistency under interruption is by transactions, not by care: a run row is
committed when the run starts (with no `finished` time), each entry with
all its endpoints and divergences is one transaction, and the run is marked
finished last. A run killed halfway therefore leaves whole entries and an
unfinished run, and every question asked of the history (what is new, what
are the trends) looks at finished runs only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import fnmatchcase
from pathlib import Path

from replaydiff.diff.findings import EndpointStats
from replaydiff.errors import UserError
from replaydiff.nightly.classify import JudgedDivergence, PastRun

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started TEXT NOT NULL,
    finished TEXT,
    suite TEXT NOT NULL,
    directory TEXT NOT NULL,
    exit_code INTEGER,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('ran', 'error', 'skipped')),
    message TEXT NOT NULL,
    compared INTEGER NOT NULL,
    UNIQUE (run_id, name)
);
CREATE TABLE IF NOT EXISTS endpoints (
    entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
    endpoint TEXT NOT NULL,
    exchanges INTEGER NOT NULL,
    divergent INTEGER NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('same', 'divergent', 'failing')),
    baseline_p50 REAL, baseline_p99 REAL, candidate_p50 REAL, candidate_p99 REAL,
    PRIMARY KEY (entry_id, endpoint)
);
CREATE TABLE IF NOT EXISTS divergences (
    entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
    fingerprint TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    kind TEXT NOT NULL,
    location TEXT NOT NULL,
    count INTEGER NOT NULL,
    total INTEGER NOT NULL,
    status TEXT NOT NULL,
    fails INTEGER NOT NULL,
    PRIMARY KEY (entry_id, fingerprint)
);
CREATE TABLE IF NOT EXISTS accepted (
    fingerprint TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    accepted_at TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Point:
    """One endpoint of one entry in one finished run."""

    run: int
    started: str
    exchanges: int
    verdict: str
    baseline_p50: float | None
    baseline_p99: float | None
    candidate_p50: float | None
    candidate_p99: float | None
    divergences: dict[str, str] = field(default_factory=dict)
    """Fingerprint → status that night."""


Trends = dict[tuple[str, str], list[Point]]
"""(entry, endpoint) → its points, oldest run first."""


class History:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path)
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise UserError(f"{path}: cannot open the history database: {exc}") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start_run(self, *, suite: Path, directory: Path, started: datetime) -> int:
        with self._db:
            cursor = self._db.execute(
                "INSERT INTO runs (started, suite, directory) VALUES (?, ?, ?)",
                (started.isoformat(timespec="seconds"), str(suite), str(directory)),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def record_entry(
        self,
        run: int,
        name: str,
        *,
        outcome: str,
        message: str = "",
        compared: int = 0,
        endpoints: Iterable[EndpointStats] = (),
        judged: Iterable[JudgedDivergence] = (),
    ) -> None:
        """One transaction: an entry is in the history with all its endpoints and divergences, or not at all."""
        judged = list(judged)
        with self._db:
            entry = self._db.execute(
                "INSERT INTO entries (run_id, name, outcome, message, compared) VALUES (?, ?, ?, ?, ?)",
                (run, name, outcome, message, compared),
            ).lastrowid
            self._db.executemany(
                "INSERT INTO endpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(entry, stats.endpoint, stats.exchanges, stats.divergent, _endpoint_verdict(stats.endpoint, judged),
                  *_percentiles(stats, "baseline"), *_percentiles(stats, "candidate")) for stats in endpoints],
            )  # fmt: skip
            self._db.executemany(
                "INSERT INTO divergences VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(entry, v.group.fingerprint, v.group.endpoint, v.group.kind, v.group.location, v.group.count,
                  v.group.total, v.status, v.fails) for v in judged],
            )  # fmt: skip

    def finish_run(self, run: int, *, finished: datetime, exit_code: int, summary: str) -> None:
        with self._db:
            self._db.execute(
                "UPDATE runs SET finished = ?, exit_code = ?, summary = ? WHERE id = ?",
                (finished.isoformat(timespec="seconds"), exit_code, summary, run),
            )

    def past_runs(self, name: str, *, before: int, last: int) -> list[PastRun]:
        """The entry's last `last` finished runs that replayed it, oldest first, with their divergences."""
        rows = self._db.execute(
            """SELECT e.id, r.started FROM entries e JOIN runs r ON r.id = e.run_id
               WHERE e.name = ? AND e.outcome = 'ran' AND r.finished IS NOT NULL AND r.id < ?
               ORDER BY r.id DESC LIMIT ?""",
            (name, before, last),
        ).fetchall()
        return [PastRun(started, self._fingerprints(entry)) for entry, started in reversed(rows)]

    def _fingerprints(self, entry: int) -> frozenset[str]:
        rows = self._db.execute("SELECT fingerprint FROM divergences WHERE entry_id = ?", (entry,))
        return frozenset(fingerprint for (fingerprint,) in rows)

    def accept(self, fingerprint: str, reason: str, *, at: datetime) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO accepted VALUES (?, ?, ?)",
                (fingerprint, reason, at.isoformat(timespec="seconds")),
            )

    def accepted(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT fingerprint, reason FROM accepted ORDER BY fingerprint").fetchall())

    def nights_seen(self, fingerprint: str) -> int:
        """Finished runs that showed the divergence: zero often means a mistyped fingerprint."""
        (count,) = self._db.execute(
            """SELECT COUNT(DISTINCT e.run_id) FROM divergences d JOIN entries e ON e.id = d.entry_id
               JOIN runs r ON r.id = e.run_id WHERE d.fingerprint = ? AND r.finished IS NOT NULL""",
            (fingerprint,),
        ).fetchone()
        return int(count)

    def trends(self, *, endpoint: str = "*", last: int = 10) -> Trends:
        """The last `last` finished runs, per entry and endpoint matching the glob `endpoint`."""
        runs = [run for (run,) in self._db.execute(
            "SELECT id FROM runs WHERE finished IS NOT NULL ORDER BY id DESC LIMIT ?", (last,))]  # fmt: skip
        if not runs:
            return {}
        marks = ",".join("?" * len(runs))
        trends: Trends = {}
        for name, entry, path, run, started, exchanges, verdict, b50, b99, c50, c99 in self._db.execute(
            f"""SELECT e.name, e.id, p.endpoint, r.id, r.started, p.exchanges, p.verdict, p.baseline_p50,
                       p.baseline_p99, p.candidate_p50, p.candidate_p99
                FROM endpoints p JOIN entries e ON e.id = p.entry_id JOIN runs r ON r.id = e.run_id
                WHERE r.id IN ({marks}) ORDER BY e.name, p.endpoint, r.id""",
            runs,
        ):
            if fnmatchcase(path, endpoint):
                point = Point(run, started, exchanges, verdict, b50, b99, c50, c99, self._statuses(entry, path))
                trends.setdefault((name, path), []).append(point)
        return trends

    def _statuses(self, entry: int, endpoint: str) -> dict[str, str]:
        rows = self._db.execute(
            "SELECT fingerprint, status FROM divergences WHERE entry_id = ? AND endpoint = ? ORDER BY fingerprint",
            (entry, endpoint),
        )
        return dict(rows.fetchall())


def _endpoint_verdict(endpoint: str, judged: list[JudgedDivergence]) -> str:
    mine = [divergence for divergence in judged if divergence.group.endpoint == endpoint]
    return "failing" if any(v.fails for v in mine) else "divergent" if mine else "same"


def _percentiles(stats: EndpointStats, target: str) -> tuple[float | None, float | None]:
    found = stats.latency.get(target)
    return (found.p50, found.p99) if found is not None else (None, None)
