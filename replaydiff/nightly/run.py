"""The nightly workflow: every entry of a suite replayed, diffed, judged against history, and recorded.

An entry that cannot run does not stop the night: a target that is down
fails that entry (the night fails: something went untested), a corpus that
is not one is skipped (reported, and the night fails only if nothing at all
could run). Ctrl-C stops the night; entries recorded so far stay in the
history, in an unfinished run that later nights do not compare with.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from replaydiff.corpora import CorpusError
from replaydiff.curation.minimize import curation_note, minimize
from replaydiff.diff.analysis import analyze_results
from replaydiff.diff.findings import DiffReport
from replaydiff.errors import EXIT_DIVERGENT, EXIT_INCONCLUSIVE, EXIT_SAME, EXIT_USAGE, UserError
from replaydiff.nightly.classify import FAIL_BY_DEFAULT, JudgedDivergence, gone, judge_divergences
from replaydiff.nightly.history import History
from replaydiff.nightly.suite import Entry, Suite
from replaydiff.replaying import replay_corpus
from replaydiff.replayer.targets import ReplayError

Outcome = Literal["ran", "error", "skipped"]
SHOWN_FAILING = 3
"""Failing fingerprints named in the summary line: a chat message must stay one line."""
SINCE_RUNS = 366
"""How far back a night looks to say since when a divergence has been showing: a year of nightly runs."""


@dataclass(frozen=True)
class EntryResult:
    entry: Entry
    outcome: Outcome
    message: str = ""
    """Why it did not run."""
    results: Path | None = None
    report: DiffReport | None = None
    judged: list[JudgedDivergence] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    """Divergences of the entry's previous run that this one no longer shows."""
    coverage: dict[str, Any] | None = None
    """What the replayed corpus kept of its source, when it is a curated one (`curation_note`)."""

    def with_status(self, status: str) -> list[JudgedDivergence]:
        return [judged for judged in self.judged if judged.status == status]


@dataclass(frozen=True)
class Night:
    run: int
    suite: Path
    directory: Path
    started: datetime
    entries: list[EntryResult]

    @property
    def failing(self) -> list[JudgedDivergence]:
        return [judged for result in self.entries for judged in result.judged if judged.fails]

    def count(self, status: str) -> int:
        return sum(len(result.with_status(status)) for result in self.entries)

    def outcomes(self, outcome: Outcome) -> list[EntryResult]:
        return [result for result in self.entries if result.outcome == outcome]

    @property
    def inconclusive(self) -> list[EntryResult]:
        """Entries whose baselines did not reproduce the recording on some endpoint: not tested, never passed."""
        return [r for r in self.entries if r.report is not None and r.report.inconclusive_fails(r.entry.diff.fail_on)]

    @property
    def exit_code(self) -> int:
        if self.failing or self.outcomes("error"):
            return EXIT_DIVERGENT
        if self.inconclusive:
            return EXIT_INCONCLUSIVE
        return EXIT_SAME if self.outcomes("ran") else EXIT_USAGE

    @property
    def passed(self) -> bool:
        return self.exit_code == EXIT_SAME

    @property
    def summary(self) -> str:
        """One line for a CI log or a chat message."""
        failing = [judged.group.fingerprint for judged in self.failing]
        named = ", ".join(failing[:SHOWN_FAILING]) + (
            f", +{len(failing) - SHOWN_FAILING} more" if len(failing) > SHOWN_FAILING else "")
        parts = [
            _plural(len(self.entries), "entry", "entries"),
            _plural(len(failing), "failing divergence") + (f" ({named})" if failing else ""),
            f"{self.count('new')} new",
            f"{self.count('known')} known",
            f"{self.count('intermittent')} intermittent",
            f"{self.count('accepted')} accepted",
        ]
        if inconclusive := self.inconclusive:
            parts.append(f"{len(inconclusive)} inconclusive ({', '.join(r.entry.name for r in inconclusive)})")
        if errors := self.outcomes("error"):
            parts.append(f"{len(errors)} failed to run ({', '.join(r.entry.name for r in errors)})")
        if skipped := self.outcomes("skipped"):
            parts.append(f"{len(skipped)} skipped ({', '.join(r.entry.name for r in skipped)})")
        return f"replaydiff nightly: {', '.join(parts)} — {'PASS' if self.passed else 'FAIL'}"


def run_suite(
    suite: Suite, *, directory: Path, history: History, console: Console,
    fail_statuses: Collection[str] = FAIL_BY_DEFAULT,
) -> Night:
    """Replays, diffs and records every entry, then marks the run finished; the caller writes the reports.
    `fail_statuses`: which divergences fail the night (`classify.FAIL_BY_DEFAULT`: new and known ones)."""
    accepted = {**history.accepted(), **suite.accepted}
    started = datetime.now(timezone.utc)
    run = history.start_run(suite=suite.path, directory=directory, started=started)
    entries = []
    for entry in suite.entries:
        console.rule(entry.name)
        result = _run_entry(entry, directory / "entries" / entry.slug, history, run, accepted, console,
                            fail_statuses, started)
        history.record_entry(
            run, entry.name, outcome=result.outcome, message=result.message,
            compared=result.report.totals.compared if result.report else 0,
            endpoints=result.report.endpoints if result.report else (), judged=result.judged,
        )  # fmt: skip
        entries.append(result)
    night = Night(run, suite.path, directory, started, entries)
    history.finish_run(run, finished=datetime.now(timezone.utc), exit_code=night.exit_code, summary=night.summary)
    return night


def _run_entry(
    entry: Entry, directory: Path, history: History, run: int, accepted: dict[str, str], console: Console,
    fail_statuses: Collection[str], started: datetime,
) -> EntryResult:
    directory.mkdir(parents=True, exist_ok=True)
    job = replace(entry.job, output=directory / "results.jsonl.zst", endpoints=entry.diff.options.rules.patterns)
    try:
        if entry.minimize is not None:
            curated = minimize(entry.corpus, directory / "corpus.jsonl.zst", max_exchanges=entry.minimize)
            job = replace(job, corpus=curated.output)
        coverage = curation_note(job.corpus)
        replay_corpus(job, console=console)
    except (CorpusError, UserError) as exc:
        return EntryResult(entry, "skipped", f"corpus skipped: {exc}")
    except ReplayError as exc:
        return EntryResult(entry, "error", str(exc))
    report = analyze_results(job.output, options=entry.diff.options)
    if not report.totals.compared:
        message = f"nothing compared: no exchange of {entry.corpus} has both a baseline and a candidate record"
        return EntryResult(entry, "error", message, job.output, report, coverage=coverage)
    past = history.past_runs(entry.name, before=run, last=SINCE_RUNS)
    found = judge_divergences(report, past, accepted, tonight=started.isoformat(timespec="seconds"),
                              fail_kinds=entry.diff.fail_on, fail_statuses=fail_statuses)
    return EntryResult(entry, "ran", "", job.output, report, found, gone(report, past), coverage)


def _plural(count: int, singular: str, plural: str = "") -> str:
    return f"{count} {singular if count == 1 else plural or singular + 's'}"
