"""`replaydiff demo`: the whole pipeline on the bundled shop, checked against what was planted.

The demo is also a self-test: it exits 0 only when the report shows exactly
the planted divergences (or nothing, with `--aa`), so a regression in any
stage of replaydiff shows up as a failing demo.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import click
from rich.console import Console

from replaydiff.corpora.protobuf import read_schema
from replaydiff.demo.grpc_catalog import PLANTED_GRPC, PROTO as CATALOG_PROTO
from replaydiff.demo.samples import sample_path
from replaydiff.diff.findings import DiffReport
from replaydiff.replayer.accounts import load_identities
from replaydiff.replayer.credentials import Credentials
from replaydiff.replayer.engine import ReplayOptions
from replaydiff.replayer.plan import Pacing, Selection
from replaydiff.replayer.targets import Target
from replaydiff.commands.diffing import DiffSettings, diff_options, report_results
from replaydiff.demo.services import PLANTED
from replaydiff.demo.system import DEMO_FAULTS, DEMO_UPSTREAM, DemoSystem, DemoSystemError
from replaydiff.errors import EXIT_DIVERGENT, EXIT_SAME, UserError
from replaydiff.replaying import ReplayJob, replay_corpus

DEMO_RULES = Path(__file__).parent.parent / "demo" / "rules.toml"
"""Tolerates the rating drift and the category order the candidate plants: they must not be reported."""
DEMO_ACCOUNTS = Path(__file__).parent.parent / "demo" / "accounts.toml"
"""The sandbox's test accounts: the recorded users' orders are replayed as theirs (`--identities`)."""

@click.command()
@click.option("--aa", is_flag=True, help="Use the baseline as the candidate too: an A/A run must report nothing.")
@click.option("--mock", is_flag=True,
              help="No inventory service: the shops' calls to it are answered from the inventory calls recorded with "
                   "the bundled corpus (a mocking tap, still with the seeded faults).")
@click.option("--no-grpc", is_flag=True, help="Leave out the gRPC catalog (its corpus, replay and report).")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help="Replay speed relative to the recorded timing.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Replay only the first N exchanges.")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Keep the results file here [default: a temporary file]; the catalog's beside it, "
                   "NAME-catalog.jsonl.zst.")
@diff_options(default_rules=DEMO_RULES)
def demo(aa: bool, mock: bool, no_grpc: bool, speed: float, limit: int | None, output: Path | None,
         diff_settings: DiffSettings) -> None:
    """Start the demo system, replay its bundled corpora through baseline, baseline#2 and candidate, and diff.

    The shop (HTTP/1.1, JSON) and its gRPC catalog (cleartext HTTP/2, protobuf) each have a recorded corpus and a
    report; the demo exits 0 only when the reports show exactly the planted divergences.
    """
    progress = Console(stderr=True)
    found: set[str] = set()
    findings = 0
    with tempfile.TemporaryDirectory(prefix="replaydiff-demo-") as scratch:
        results = output or Path(scratch) / "demo-shop.results.jsonl.zst"
        try:
            with DemoSystem(faults=DEMO_FAULTS, mock=DEMO_UPSTREAM if mock else None, catalog=not no_grpc) as system:
                inventory = f"mocked from {DEMO_UPSTREAM.name}" if mock else system.inventory
                catalog = "" if no_grpc else f", gRPC catalog {system.catalog_baseline}, candidate {system.catalog_candidate}"
                progress.print(
                    f"demo system: inventory {inventory}, shop {system.baseline}, "
                    f"shop candidate {system.candidate}{catalog}{' (A/A: candidate = baseline)' if aa else ''}",
                    soft_wrap=True,
                )
                candidate = system.baseline if aa else system.candidate
                job = ReplayJob(
                    corpus=sample_path("demo-shop"),
                    targets=_targets(system.baseline, candidate),
                    output=results,
                    pacing=Pacing(speed=speed),
                    selection=Selection(limit=limit),
                    options=ReplayOptions(credentials=Credentials(load_identities(DEMO_ACCOUNTS))),
                    upstream_log=system.upstream_log,
                )
                replay_corpus(job, console=progress)
                # while the system runs: `--confirm N` resends to it
                report = report_results(results, console=Console(), settings=diff_settings, targets=job.targets)
                found |= {group.fingerprint for group in report.divergences}
                findings += len(report.findings)
                if not no_grpc:
                    catalog_report = _replay_catalog(system, aa, speed, limit, results, diff_settings, progress)
                    found |= {group.fingerprint for group in catalog_report.divergences}
                    findings += len(catalog_report.findings)
            if mock and system.tap_farewell:  # how the mock answered (absent if the tap had to be killed)
                progress.print(system.tap_farewell.removeprefix("replaydiff: "), soft_wrap=True)
        except DemoSystemError as exc:
            raise UserError(f"the demo system did not start: {exc}") from exc
    planted = PLANTED if no_grpc else PLANTED | PLANTED_GRPC
    expected = frozenset() if aa else planted
    if found == expected:
        what = (
            "no divergence, as an A/A run must"
            if aa
            else f"exactly the {len(planted)} planted divergences, in {findings} findings"
        )
        progress.print(f"[green]demo: the reports show {what}[/]")
        raise SystemExit(EXIT_SAME)
    for fingerprint in sorted(expected - found):
        progress.print(f"[red]demo: missed planted divergence {fingerprint}[/]")
    for fingerprint in sorted(found - expected):
        progress.print(f"[red]demo: false positive {fingerprint}[/]")
    raise SystemExit(EXIT_DIVERGENT)


def _targets(baseline: str, candidate: str) -> list[Target]:
    return [Target.parse("baseline", baseline), Target.parse("baseline2", baseline), Target.parse("candidate", candidate)]


def _replay_catalog(system: DemoSystem, aa: bool, speed: float, limit: int | None, shop_results: Path,
                    settings: DiffSettings, progress: Console) -> DiffReport:
    """The catalog's corpus through its baseline (twice) and candidate, and its report, decoded with the catalog's
    own schema; report files the user asked for get a `-catalog` twin beside them."""
    progress.print("[bold]gRPC catalog[/] (cleartext HTTP/2, protobuf messages)")
    results = shop_results.with_name(shop_results.name.split(".")[0] + "-catalog.jsonl.zst")
    job = ReplayJob(
        corpus=sample_path("demo-catalog"),
        targets=_targets(system.catalog_baseline, system.catalog_baseline if aa else system.catalog_candidate),
        output=results,
        pacing=Pacing(speed=speed),
        selection=Selection(limit=limit),
    )
    replay_corpus(job, console=progress)
    catalog_settings = replace(
        settings,
        options=replace(settings.options, schema=read_schema(None, [CATALOG_PROTO])),
        json_out=_twin(settings.json_out),
        junit_out=_twin(settings.junit_out),
        html_out=_twin(settings.html_out),
    )
    return report_results(results, console=Console(), settings=catalog_settings, targets=job.targets)


def _twin(path: Path | None) -> Path | None:
    return path.with_name(f"{path.stem}-catalog{path.suffix}") if path else None
