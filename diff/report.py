"""The terminal report: a verdict a person reads in ten seconds, then the evidence.

Order: verdict and counts, latency per endpoint, one block per divergence
with an example side by side, then what was suppressed as noise (so a
reader can tell "no divergence" from "everything filtered"). Values from
the replay are printed as `Text`, never as markup, so a body like `[b]`
prints as itself. Rich turns colour off when the output is not a terminal.
"""

from __future__ import annotations

from collections import defaultdict

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from replaydiff.diff.findings import DiffReport, DivergenceGroup, EndpointStats
from replaydiff.diff.latency import Percentiles

_SHOWN_SUPPRESSED = 5
_SHOWN_ENDPOINTS = 5
"""The worst endpoints in the summary; the rest are in the blocks below and the JSON report."""


def render_text(report: DiffReport, console: Console) -> None:
    console.print(_summary(report))
    if fidelity := _fidelity(report):
        console.print()
        console.print(fidelity)
    if report.endpoints:
        console.print()
        console.print(_latency_table(report.endpoints))
    for number, group in enumerate(report.divergences, start=1):
        console.print()
        console.print(_divergence(number, group))
    if report.suppressed:
        console.print()
        console.print(_suppressed(report))


def _summary(report: DiffReport) -> Group:
    totals = report.totals
    if report.divergences:
        verdict = Text("DIVERGENT", style="bold red")
        affected = len({group.endpoint for group in report.divergences})
        found = (
            f"{_count(len(report.divergences), 'divergence')} on {affected} of "
            f"{_count(len(report.endpoints), 'endpoint')}"
        )
    elif report.verdict == "inconclusive":
        verdict = Text("INCONCLUSIVE", style="bold yellow")
        found = (
            f"{_count(len(report.fidelity.untested), 'endpoint')} of {len(report.endpoints)} not tested: "
            "the baselines did not reproduce the recording"
        )
    else:
        verdict = Text("SAME", style="bold green")
        found = f"no divergences on {_count(len(report.endpoints), 'endpoint')}"
    headline = Text.assemble(verdict, f"  {found} · {_count(totals.compared, 'exchange')} compared")
    lines = [headline]
    if report.targets:
        lines.append(Text("  " + " · ".join(f"{name} {url}" for name, url in report.targets.items()), style="dim"))
    lines += [Text(f"  not tested: {line}", style="yellow") for line in report.fidelity.reasons()]
    if report.divergences:
        lines.append(Text("  by kind: ") + _kind_counts(report))
        lines += _worst_endpoints(report)
    lines += [Text(f"  {line}", style="yellow") for line in report.warnings()]
    return Group(*lines)


def _fidelity(report: DiffReport) -> Table | None:
    """Per endpoint, how often the baseline answered the status production had answered: what was really
    compared. Untested endpoints first, with the reason in words (`diff.fidelity`)."""
    fidelity = report.fidelity
    if not fidelity.known:
        return None
    table = Table(title="Fidelity: baseline answered the recorded status", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)  # fmt: skip
    table.add_column("endpoint", overflow="fold")
    table.add_column("matching", justify="right", no_wrap=True)
    table.add_column("", overflow="fold")
    for stats in sorted(fidelity.endpoints, key=lambda e: (not e.untested, e.share, e.endpoint)):
        table.add_row(
            stats.endpoint,
            f"{stats.matching:,}/{stats.exchanges:,} {stats.share:.0%}",
            Text(f"not tested: {stats.finding}", style="yellow") if stats.untested else "",
            style="yellow" if stats.untested else None,
        )
    return table


def _worst_endpoints(report: DiffReport) -> list[Text]:
    """Ranked by their worst divergence's share: of exchanges, or for latency of the pairs it rests on."""
    groups: dict[str, list[DivergenceGroup]] = {}
    for group in report.divergences:
        groups.setdefault(group.endpoint, []).append(group)

    def share(endpoint: str) -> float:
        return max(g.count / g.total if g.total else 0.0 for g in groups[endpoint])

    ranked = sorted(groups, key=lambda endpoint: (-share(endpoint), endpoint))
    lines = [Text("  worst endpoints:")]
    for endpoint in ranked[:_SHOWN_ENDPOINTS]:
        labels = dict.fromkeys(f"{g.kind} {g.location}" if g.kind == "latency" else g.kind for g in groups[endpoint])
        lines.append(
            Text(f"    {endpoint}  ", style="bold")
            + Text(", ".join(labels), style="red")
            + Text(f"  {share(endpoint):.0%}", style="dim")
        )
    if len(ranked) > _SHOWN_ENDPOINTS:
        lines.append(Text(f"    and {len(ranked) - _SHOWN_ENDPOINTS} more", style="dim"))
    return lines


def _kind_counts(report: DiffReport) -> Text:
    exchanges: defaultdict[str, int] = defaultdict(int)
    for stats in report.endpoints:
        for kind, count in stats.divergent_by_kind.items():
            exchanges[kind] += count
    parts = [f"{kind} {_count(count, 'exchange')}" for kind, count in exchanges.items()]
    if regressions := sum(1 for stats in report.endpoints if stats.latency_regression):
        parts.append(f"latency {_count(regressions, 'endpoint')}")
    return Text(" · ".join(parts))


def _latency_table(endpoints: list[EndpointStats]) -> Table:
    table = Table(title="Latency (ms)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    # The numbers keep their width; a long endpoint wraps, but never into a sliver.
    table.add_column("endpoint", overflow="fold", min_width=min(20, max(len(s.endpoint) for s in endpoints)))
    for heading in ("n", "baseline\np50/p95/p99", "candidate\np50/p95/p99", "paired\nΔ p50", "p99\n×"):
        table.add_column(heading, justify="right", no_wrap=True)
    for stats in endpoints:
        baseline, candidate = stats.latency.get("baseline"), stats.latency.get("candidate")
        delta = stats.paired.median_delta_ms
        table.add_row(
            stats.endpoint,
            f"{stats.exchanges:,}",
            _percentiles(baseline),
            _percentiles(candidate),
            "–" if delta is None else f"{delta:+.1f}",
            f"{candidate.p99 / baseline.p99:.2f}" if baseline and candidate and baseline.p99 else "–",
            style="bold red" if stats.latency_regression else None,
        )
    return table


def _percentiles(stats: Percentiles | None) -> str:
    return "–" if stats is None else "/".join(_ms(value) for value in (stats.p50, stats.p95, stats.p99))


def _ms(value: float) -> str:
    """Three significant digits at most: 4.3, 72.6, 385, 2491."""
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _divergence(number: int, group: DivergenceGroup) -> Group:
    share = group.count / group.total if group.total else 0.0
    heading = Text.assemble(
        (f"{number}. ", "bold"),
        (group.endpoint, "bold"),
        "  ",
        (group.kind, "red"),
        "  ",
        (f"{group.location}  " if group.location else "", "cyan"),
        f"{group.count:,}/{group.total:,} ({share:.0%})",
    )
    example = group.examples[0].divergence
    table = Table(box=box.SIMPLE, show_edge=False, padding=(0, 1))
    table.add_column("baseline", overflow="fold", ratio=1)
    table.add_column("candidate", overflow="fold", ratio=1)
    table.add_row(_value(example.baseline), _value(example.candidate))
    notes = [group.detail] if group.detail else []
    if example.exchange_id:
        notes.append(f"e.g. exchange {example.exchange_id}")
    notes.append(f"fingerprint {group.fingerprint}")
    return Group(heading, table, *(Text(f"   {note}", style="dim") for note in notes))


def _value(value: object) -> Text:
    return Text("(absent)", style="dim italic") if value is None else Text(str(value))


def _suppressed(report: DiffReport) -> Text:
    """Grouped by location across endpoints: `$.generated_at` on 9 endpoints reads better than nine lines."""
    endpoints: defaultdict[str, set[str]] = defaultdict(set)
    for location in report.suppressed:
        where = f"{location.location} ({location.kind})" if location.location else location.kind
        endpoints[where].add(location.endpoint)
    ranked = sorted(endpoints.items(), key=lambda item: (-len(item[1]), item[0]))
    shown = [f"{where} on {_count(len(names), 'endpoint')}" for where, names in ranked[:_SHOWN_SUPPRESSED]]
    if len(ranked) > _SHOWN_SUPPRESSED:
        shown.append(f"and {len(ranked) - _SHOWN_SUPPRESSED} more")
    return Text(f"Suppressed as noise: {_count(len(ranked), 'location')} — " + "; ".join(shown), style="dim")


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"
