"""A night's reports: the one-line summary, `report.json`, `junit.xml`, and each entry's detail page.

The differ's renderers (`diff.junit`, `diff.html`) ask a report which of its
divergences fail; `JudgedReport` answers with the nightly's judgement (by
default new and known ones), so accepted and intermittent divergences come
out as visible but not failing, the way the exit code treats them.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Collection
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from replaydiff.curation.minimize import describe_curation
from replaydiff.diff.findings import DiffReport, DivergenceGroup
from replaydiff.diff.html import render_html
from replaydiff.diff.junit import render_junit
from replaydiff.errors import UserError
from replaydiff.nightly.classify import JudgedDivergence
from replaydiff.nightly.history import Trends
from replaydiff.nightly.html import render_run_html
from replaydiff.nightly.run import EntryResult, Night

SCHEMA = "replaydiff-nightly/1"
_STYLES = {"new": "bold red", "intermittent": "magenta", "known": "yellow", "accepted": "dim", "gone": "green"}


@dataclass(frozen=True, slots=True)
class JudgedReport(DiffReport):
    """A diff report whose failing divergences are those the night judged failing."""

    failing_fingerprints: frozenset[str] = frozenset()

    @classmethod
    def of(cls, result: EntryResult) -> JudgedReport:
        assert result.report is not None, "only entries that ran have a report"
        failing = frozenset(judged.group.fingerprint for judged in result.judged if judged.fails)
        return cls(**{f.name: getattr(result.report, f.name) for f in fields(DiffReport)}, failing_fingerprints=failing)

    def failing(self, kinds: Collection[str] | None = None) -> list[DivergenceGroup]:
        """`kinds` was already applied when the night judged its divergences."""
        return [group for group in self.divergences if group.fingerprint in self.failing_fingerprints]


def run_json(night: Night) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "run": night.run,
        "suite": str(night.suite),
        "started": night.started.isoformat(timespec="seconds"),
        "passed": night.passed,
        "exit_code": night.exit_code,
        "summary": night.summary,
        "entries": [_entry_json(result, night.directory) for result in night.entries],
    }


def _entry_json(result: EntryResult, directory: Path) -> dict[str, Any]:
    """File paths relative to the run directory, so they hold in a downloaded CI artifact."""
    return {
        "name": result.entry.name,
        "corpus": str(result.entry.corpus),
        "coverage": result.coverage,
        "target": result.entry.target,
        "outcome": result.outcome,
        "message": result.message,
        "results": str(result.results.relative_to(directory)) if result.results else None,
        "divergences": [judged.to_json() for judged in result.judged],
        "gone": result.gone,
        "report": JudgedReport.of(result).to_json() if result.outcome == "ran" else None,
    }


def write_reports(night: Night, trends: Trends) -> None:
    """`report.json`, `junit.xml` and `report.html` in the run directory, and each entry's detail page."""
    files = {
        night.directory / "report.json": json.dumps(run_json(night), indent=2, ensure_ascii=False) + "\n",
        night.directory / "junit.xml": run_junit(night),
        night.directory / "report.html": render_run_html(night, trends),
    }
    for result in night.outcomes("ran"):
        files[night.directory / "entries" / result.entry.slug / "report.html"] = render_html(JudgedReport.of(result))
    for path, text in files.items():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"{path}: cannot write the report: {exc.strerror}") from None


def print_night(night: Night, console: Console) -> None:
    """Each entry's judged divergences, one line each, for the CI log."""
    for result in night.entries:
        if result.outcome != "ran":
            console.print(f"[bold]{escape(result.entry.name)}[/]  [red]{result.outcome}[/]: {escape(result.message)}")
            continue
        assert result.report is not None
        console.print(
            f"[bold]{escape(result.entry.name)}[/]  {result.report.totals.compared:,} exchanges compared, "
            f"{len(result.judged)} divergences"
        )
        for reason in result.report.fidelity.reasons():
            console.print(f"  [yellow]not tested[/]          {escape(reason)}", soft_wrap=True)
        if note := describe_curation(result.coverage):
            console.print(f"  [dim]{escape(note)}[/]", soft_wrap=True)
        lines = [(v.status + (" FAILS" if v.fails else ""), v.group.fingerprint, f"{v.group.count}/{v.group.total}",
                  _since(v) + (f"; {v.reason}" if v.reason else "")) for v in result.judged]
        lines += [("gone", fp, "", "") for fp in result.gone]  # fmt: skip
        for status, fingerprint, counts, note in lines:
            style = _STYLES[status.split()[0]]
            console.print(f"  [{style}]{status:<18}[/] {escape(fingerprint)}  {counts}"
                          + (f"  [dim]({escape(note)})[/]" if note else ""), soft_wrap=True)  # fmt: skip
    console.print(f"report: {night.directory / 'report.html'}", soft_wrap=True)


def _since(judged: JudgedDivergence) -> str:
    """Since when a divergence has been showing, for a person reading a CI log."""
    return f"since {judged.since[:10]}, {judged.nights} run{'s' if judged.nights > 1 else ''} in a row"


def run_junit(night: Night) -> str:
    """One test suite per entry, one test case per endpoint; an entry that did not run is one case."""
    suites = ET.Element("testsuites", name="replaydiff nightly")
    for result in night.entries:
        if result.outcome == "ran":
            suite = ET.fromstring(render_junit(JudgedReport.of(result)))
            for case in suite.iter("testcase"):
                case.set("classname", result.entry.name)
        else:
            suite = ET.Element("testsuite", tests="1", failures="0", skipped=str(int(result.outcome == "skipped")),
                               errors=str(int(result.outcome == "error")))  # fmt: skip
            case = ET.SubElement(suite, "testcase", classname=result.entry.name, name="replay")
            ET.SubElement(case, "skipped" if result.outcome == "skipped" else "error", message=result.message)
        suite.set("name", result.entry.name)
        suites.append(suite)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
