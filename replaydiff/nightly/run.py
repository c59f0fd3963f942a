"""The nightly workflow: every entry of a suite replayed, diffed, judged against history, and recorded.

An entry that cannot run does not stop the night: a target that is down
fails that entry (the night fails: something went untested), a corpus that
is not one is skipped (reported, and the night fails only if nothing at all
could run). Ctrl-C stops the night; entries recorded so far stay in the
history, in an unfinished run that later nights do not compare with.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from replaydiff.corpora import CorpusError, ResultsReader
from replaydiff.curation.minimize import curation_note, minimize
from replaydiff.diff.analysis import analyze
from replaydiff.diff.findings import DiffReport
from replaydiff.errors import EXIT_DIVERGENT, EXIT_SAME, EXIT_USAGE, UserError
from replaydiff.nightly.classify import WINDOW, Verdict, gone, verdicts
from replaydiff.nightly.history import History
from replaydiff.nightly.suite import Entry, Suite
from replaydiff.replaying import replay_corpus
from replaydiff.replayer.targets import ReplayError

Outcome = Literal["ran", "error", "skipped"]
SHOWN_NEW = 3
"""New fingerprints named in the summary line: a chat message must stay one line."""


@dataclass(frozen=True)
class EntryResult:
    entry: Entry
    outcome: Outcome
    message: str = ""
    """Why it did not run."""
    results: Path | None = None
    report: DiffReport | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    """Divergences of the entry's previous run that this one no longer shows."""
    coverage: dict[str, Any] | None = None
    """What the replayed corpus kept of its source, when it is a curated one (`curation_note`)."""

    def with_status(self, status: str) -> list[Verdict]:
        return [verdict for verdict in self.verdicts if verdict.status == status]


@dataclass(frozen=True)
class Night:
    run: int
    suite: Path
    directory: Path
    started: datetime
    entries: list[EntryResult]

    @property
    def failing(self) -> list[Verdict]:
        return [verdict for result in self.entries for verdict in result.verdicts if verdict.fails]

    def count(self, status: str) -> int:
        return sum(len(result.with_status(status)) for result in self.entries)

    def outcomes(self, outcome: Outcome) -> list[EntryResult]:
        return [result for result in self.entries if result.outcome == outcome]

    @property
    def exit_code(self) -> int:
        if self.failing or self.outcomes("error"):
            return EXIT_DIVERGENT
        return EXIT_SAME if self.outcomes("ran") else EXIT_USAGE

    @property
    def passed(self) -> bool:
        return self.exit_code == EXIT_SAME

    @property
    def summary(self) -> str:
        """One line for a CI log or a chat message."""
        new = [verdict.group.fingerprint for verdict in self.failing]
        named = ", ".join(new[:SHOWN_NEW]) + (f", +{len(new) - SHOWN_NEW} more" if len(new) > SHOWN_NEW else "")
        parts = [
            _plural(len(self.entries), "entry", "entries"),
            _plural(len(new), "new divergence") + (f" ({named})" if new else ""),
            f"{self.count('accepted')} accepted",
            f"{self.count('intermittent')} intermittent",
        ]
        if known := self.count("known"):
            parts.append(f"{known} known")
        if errors := self.outcomes("error"):
            parts.append(f"{len(errors)} failed to run ({', '.join(r.entry.name for r in errors)})")
        if skipped := self.outcomes("skipped"):
            parts.append(f"{len(skipped)} skipped ({', '.join(r.entry.name for r in skipped)})")
        return f"replaydiff nightly: {', '.join(parts)} — {'PASS' if self.passed else 'FAIL'}"


def run_suite(suite: Suite, *, directory: Path, history: History, console: Console) -> Night:
    """Replays, diffs and records every entry, then marks the run finished; the caller writes the reports."""
    accepted = {**history.accepted(), **suite.accepted}
    started = datetime.now(timezone.utc)
    run = history.start_run(suite=suite.path, directory=directory, started=started)
    entries = []
    for entry in suite.entries:
        console.rule(entry.name)
        result = _run_entry(entry, directory / "entries" / entry.slug, history, run, accepted, console)
        history.record_entry(
            run, entry.name, outcome=result.outcome, message=result.message,
            compared=result.report.totals.compared if result.report else 0,
            endpoints=result.report.endpoints if result.report else (), verdicts=result.verdicts,
        )  # fmt: skip
        entries.append(result)
    night = Night(run, suite.path, directory, started, entries)
    history.finish_run(run, finished=datetime.now(timezone.utc), exit_code=night.exit_code, summary=night.summary)
    return night


def _run_entry(
    entry: Entry, directory: Path, history: History, run: int, accepted: dict[str, str], console: Console
) -> EntryResult:
    directory.mkdir(parents=True, exist_ok=True)
    job = replace(entry.job, output=directory / "results.jsonl.zst")
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
    reader = ResultsReader(job.output)
    report = analyze(reader, options=entry.diff.options, targets=reader.header.get("targets") or None)
    if not report.totals.compared:
        message = f"nothing compared: no exchange of {entry.corpus} has both a baseline and a candidate record"
        return EntryResult(entry, "error", message, job.output, report, coverage=coverage)
    past = history.past_fingerprints(entry.name, before=run, window=WINDOW)
    found = verdicts(report, past, accepted, entry.diff.fail_on)
    return EntryResult(entry, "ran", "", job.output, report, found, gone(report, past), coverage)


def _plural(count: int, singular: str, plural: str = "") -> str:
    return f"{count} {singular if count == 1 else plural or singular + 's'}"
