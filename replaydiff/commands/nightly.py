"""`replaydiff nightly SUITE`, `replaydiff history` and `replaydiff accept FINGERPRINT`.

Exit codes of `nightly`: 0 no failing divergence, 1 a failing divergence (by
default any that is neither fixed nor accepted, new or known) or an entry that
could not run, 2 a usage or input error (a bad suite, or no entry could run
at all).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from replaydiff.nightly.accepted import checked_fingerprint, finding_fingerprints
from replaydiff.nightly.classify import FAIL_BY_DEFAULT, FAILABLE, parse_fail_statuses
from replaydiff.nightly.history import History
from replaydiff.nightly.report import print_night, write_reports
from replaydiff.nightly.run import run_suite
from replaydiff.nightly.suite import load_suite
from replaydiff.nightly.trends import render_trends

DEFAULT_DB = Path(".replaydiff") / "history.sqlite"
TREND_RUNS = 14
"""Runs shown in a night's trend charts: two weeks of nights."""

_DB = click.Path(dir_okay=False, path_type=Path)


def _db_option(default_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--db", type=_DB, metavar="FILE", help=f"The history database [default: {default_help}].")


@click.command()
@click.argument("suite", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="The run directory [default: nightly-runs/<UTC time>].")  # fmt: skip
@_db_option(f"{DEFAULT_DB} next to the suite")
@click.option("--fail-on", "fail_statuses", default=",".join(sorted(FAIL_BY_DEFAULT)), show_default=True,
              metavar="STATUSES", callback=lambda _ctx, _param, text: _fail_statuses(text),
              help=f"Which divergences fail the run, by status: some of {', '.join(FAILABLE)}. "
                   "'new' fails only the night a divergence appears.")  # fmt: skip
@click.pass_context
def nightly(ctx: click.Context, suite: Path, out: Path | None, db: Path | None, fail_statuses: frozenset[str]) -> None:
    """Replay and diff every entry of SUITE, judge the divergences against the history, write the run's reports.

    A run fails while any divergence that is neither fixed nor accepted
    persists, new or known; intermittent ones (they come and go) are shown
    and do not fail unless --fail-on names them; accepted ones are intended.
    Each divergence shows since when it has been showing.
    """
    loaded = load_suite(suite)
    directory = out or Path("nightly-runs") / datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    with History(db or suite.parent / DEFAULT_DB) as history:
        night = run_suite(loaded, directory=directory, history=history, console=Console(stderr=True),
                          fail_statuses=fail_statuses)
        write_reports(night, history.trends(last=TREND_RUNS))
    print_night(night, Console())
    click.echo(night.summary)
    ctx.exit(night.exit_code)


@click.command()
@_db_option(str(DEFAULT_DB))
@click.option("--endpoint", default="*", show_default=True, metavar="GLOB",
              help="Only endpoints matching this glob, e.g. 'GET /api/*'.")  # fmt: skip
@click.option("--last", type=click.IntRange(min=1), default=10, show_default=True, metavar="N",
              help="The last N finished runs.")  # fmt: skip
def history(db: Path | None, endpoint: str, last: int) -> None:
    """Trends per endpoint over the nightly runs: latency p50/p99, divergences appearing and disappearing."""
    with History(_existing(db or DEFAULT_DB)) as opened:
        click.echo(render_trends(opened.trends(endpoint=endpoint, last=last)))


@click.command()
@click.argument("fingerprint")
@click.option("--reason", required=True, help="Why the change is intended (shown in every report).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="A JSON report (diff --json, or a nightly run.json): FINGERPRINT may then be a finding's id, "
                   "which accepts every divergence of the finding.")  # fmt: skip
@_db_option(str(DEFAULT_DB))
def accept(fingerprint: str, reason: str, report: Path | None, db: Path | None) -> None:
    """Accept the divergence FINGERPRINT ('ENDPOINT|KIND|LOCATION'), or with --report a finding's id: it stops
    failing nightly runs, stays visible."""
    if not reason.strip():
        raise click.BadParameter("say why the change is intended", param_hint="--reason")
    if report is not None and "|" not in fingerprint:
        fingerprints = finding_fingerprints(report, fingerprint)
    else:
        fingerprints = [checked_fingerprint(fingerprint, "accept")]
    with History(_existing(db or DEFAULT_DB)) as opened:
        for accepted in fingerprints:
            opened.accept(accepted, reason, at=datetime.now(timezone.utc))
            seen = opened.nights_seen(accepted)
            click.echo(f"accepted {accepted} (seen in {seen} finished runs)")
            if not seen:
                click.echo("replaydiff: warning: no run of this history showed it; check the fingerprint", err=True)


def _fail_statuses(text: str) -> frozenset[str]:
    try:
        return parse_fail_statuses(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--fail-on") from None


def _existing(db: Path) -> Path:
    """Reading or accepting into a database that does not exist is a wrong path, not a new history."""
    if not db.exists():
        raise click.BadParameter(f"{db} does not exist; pass the --db of your nightly runs", param_hint="--db")
    return db
