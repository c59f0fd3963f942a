"""The terminal report: one screen a person reads in ten seconds; `--verbose` for every divergence.

Sections, in order (`SECTIONS`; another section slots in as one more function):
verdict and counts, the ranked findings one or two lines each, the latency
rows that matter, what was suppressed as noise (so a reader can tell "no
divergence" from "everything filtered"). `--verbose` adds the whole latency
table and one block per divergence with an example side by side.

Every line fits the console's width (`COLUMNS` when not a terminal): long
endpoint names are shortened in the middle, never broken over lines. Values
from the replay are printed as `Text`, never as markup, so a body like `[b]`
prints as itself. Rich turns colour off when the output is not a terminal.
"""

from __future__ import annotations

import os

from collections import defaultdict
from collections.abc import Callable

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from replaydiff.diff.causes import WIRE_MARK
from replaydiff.diff.findings import DiffReport, DivergenceGroup, EndpointStats, Finding
from replaydiff.diff.latency import Percentiles

SHOWN_FINDINGS = 15
"""Two lines each: with the summary and the latency rows, one screen."""
SHOWN_LATENCY = 5
_SHOWN_SUPPRESSED = 5
_SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}
_NUMBER_COLUMNS = ("n", "baseline\np50/p95/p99", "candidate\np50/p95/p99", "paired\nΔ p50", "p99\n×")

Section = Callable[[DiffReport, Console, bool], RenderableType | None]
"""A report section: (report, console, verbose) → what to print, or `None` for nothing."""


def render_text(report: DiffReport, console: Console, *, verbose: bool = False) -> None:
    for number, section in enumerate(SECTIONS):
        if (rendered := section(report, console, verbose)) is None:
            continue
        if number:
            console.print()
        console.print(rendered)


def middle(text: str, width: int) -> str:
    """`text` in at most `width` characters, cut in the middle so both ends of a name stay readable."""
    if len(text) <= width:
        return text
    if width < 5:
        return text[:width]
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def distinct_middles(names: list[str], width: int) -> list[str]:
    """Each name in at most `width` characters (`middle`), and names that would read alike once cut keep the
    part where they differ instead: `GET …/client-2/collections/{id}/rec…`, not three `GET /v1/b…ecords/{id}`."""
    shortened = [middle(name, width) for name in names]
    alike: dict[str, list[int]] = {}
    for index, short in enumerate(shortened):
        alike.setdefault(short, []).append(index)
    for indices in alike.values():
        if len(indices) < 2 or len({names[i] for i in indices}) < 2:
            continue
        for i in indices:
            name = names[i]
            differs_at = min(
                len(os.path.commonprefix([name, names[j]])) for j in indices if names[j] != name
            )
            method, _, _ = name.partition(" ")
            segment = max(name.rfind("/", 0, differs_at), len(method))
            kept = f"{method} …{name[segment:]}"
            shortened[i] = kept if len(kept) <= width else kept[: max(width - 1, 1)] + "…"
    return shortened


def _line(text: Text, console: Console) -> Text:
    text.no_wrap = True
    text.overflow = "ellipsis"
    text.truncate(console.width, overflow="ellipsis")
    return text


def _summary(report: DiffReport, console: Console, verbose: bool) -> Group:
    totals = report.totals
    endpoints = _count(len(report.endpoints), "endpoint")
    if report.divergences:
        verdict = Text("DIVERGENT", style="bold red")
        affected = len({group.endpoint for group in report.divergences})
        found = (
            f"{_count(len(report.findings), 'finding')} from {_count(len(report.divergences), 'divergence')} "
            f"on {affected} of {endpoints}"
        )
    elif report.verdict == "inconclusive":
        verdict = Text("INCONCLUSIVE", style="bold yellow")
        found = (
            f"{_count(len(report.fidelity.untested), 'endpoint')} of {len(report.endpoints)} not tested: "
            "the baselines did not reproduce the recording"
        )
    else:
        verdict = Text("SAME", style="bold green")
        found = f"no divergences on {endpoints}"
    lines = [Text.assemble(verdict, f"  {found} · {_count(totals.compared, 'exchange')} compared")]
    if report.targets:
        lines.append(Text("  " + " · ".join(f"{name} {url}" for name, url in report.targets.items()), style="dim"))
    lines += [Text(f"  not tested: {line}", style="yellow") for line in report.fidelity.reasons()]
    if report.divergences:
        lines.append(Text("  by kind: ") + _kind_counts(report))
    if report.confirm_times:
        lines.append(Text("  " + _confirmation(report), style="magenta"))
    lines += [Text(f"  {line}", style="yellow") for line in report.warnings()]
    return Group(*lines)  # wrapped, not cut: a URL or a warning must be read whole


def _confirmation(report: DiffReport) -> str:
    verdicts = list(report.confirmations.values())
    judged, noise = len(verdicts), verdicts.count("noise")
    if not judged:
        return "confirmation: nothing resent (no divergence of an idempotent request on few exchanges)"
    return (
        f"confirmation: {_count(judged, 'rare divergence')} resent ×{report.confirm_times} to every target: "
        f"{verdicts.count('confirmed')} confirmed, {noise} noise (suppressed), "
        f"{verdicts.count('flaky')} flaky (does not fail the run)"
    )


def _fidelity(report: DiffReport, console: Console, verbose: bool) -> Group | None:
    """How often the baseline answered the status production had answered: what was really compared. One line
    when every endpoint reproduced its recording; otherwise the endpoints that did not, least faithful first,
    with the reason in words for the untested ones (`diff.fidelity`); `--verbose` lists every endpoint."""
    fidelity = report.fidelity
    if not fidelity.known:
        return None
    matching = sum(e.matching for e in fidelity.endpoints)
    exchanges = sum(e.exchanges for e in fidelity.endpoints)
    share = matching / exchanges if exchanges else 1.0
    carried = sum(e.carried for e in fidelity.endpoints)
    not_found = sum(e.not_found for e in fidelity.endpoints)
    sessions = f"; {carried:,} values carried from earlier answers" if carried or not_found else ""
    sessions += f", {not_found:,} not found in the baseline's answers" if not_found else ""
    lines = [Text(f"Fidelity to the recording: the baseline answered the recorded status on {matching:,} of "
                  f"{_count(exchanges, 'exchange')} ({share:.0%}){sessions}")]  # fmt: skip
    ranked = sorted(fidelity.endpoints, key=lambda e: (not e.untested, e.share, -e.not_found, e.endpoint))
    shown = ranked if verbose else [e for e in ranked if e.untested or e.matching < e.exchanges or e.not_found]
    width = max(20, console.width - 40)
    for stats in shown[: None if verbose else SHOWN_LATENCY]:
        row = Text(f"  {middle(stats.endpoint, width)}  {stats.matching:,}/{stats.exchanges:,} {stats.share:.0%}")
        if stats.carried or stats.not_found:
            row.append(f"  carried {stats.carried:,}" + (f", {stats.not_found:,} not found" if stats.not_found else ""),
                       style="dim")  # fmt: skip
        if stats.untested:
            row.append(f"  not tested: {stats.finding}", style="yellow")
        lines.append(_line(row, console))
    if not verbose and len(shown) > SHOWN_LATENCY:
        lines.append(Text(f"  and {len(shown) - SHOWN_LATENCY} more endpoints below 100% (--verbose)", style="dim"))
    return Group(*lines)


def _kind_counts(report: DiffReport) -> Text:
    exchanges: defaultdict[str, int] = defaultdict(int)
    for stats in report.endpoints:
        for kind, count in stats.divergent_by_kind.items():
            exchanges[kind] += count
    parts = [f"{kind} {_count(count, 'exchange')}" for kind, count in exchanges.items()]
    if regressions := sum(1 for stats in report.endpoints if stats.latency_regression):
        parts.append(f"latency {_count(regressions, 'endpoint')}")
    return Text(" · ".join(parts))


def _findings(report: DiffReport, console: Console, verbose: bool) -> Group | None:
    if not report.findings:
        return None
    shown = report.findings if verbose else report.findings[:SHOWN_FINDINGS]
    lines = [Text("Findings, most severe first", style="bold")]
    digits = len(str(len(shown)))
    for number, finding in enumerate(shown, start=1):
        lines += _finding_lines(number, digits, finding, console)
    if hidden := len(report.findings) - len(shown):
        lines.append(Text(f"  and {hidden} more: --verbose, or the --json / --html report", style="dim"))
    return Group(*lines)


def _finding_lines(number: int, digits: int, finding: Finding, console: Console) -> list[Text]:
    reach = f"  {finding.exchanges:,}/{finding.total:,} ({finding.share:.0%})"
    confirmed = f" [{finding.confirmation}]" if finding.confirmation else ""
    lead = f"{number:>{digits + 2}}. "
    severity = f"{finding.severity:<8} "
    room = console.width - len(lead) - len(severity) - len(reach) - len(confirmed)
    title = Text.assemble(
        lead, (severity, _SEVERITY_STYLE[finding.severity]),
        (_fitted_title(finding.title.removesuffix(WIRE_MARK), finding.endpoints, max(room, 20)), "bold"),
        (confirmed, "magenta"), (reach, "dim"),
    )  # fmt: skip
    indent = " " * (len(lead) + len(severity))
    detail = Text(indent + _fit(_detail(finding), max(console.width - len(indent), 20)), style="dim")
    return [_line(title, console), _line(detail, console)]


def _fitted_title(title: str, endpoints: list[str], width: int) -> str:
    """The title in `width` characters with its endpoint still named: the endpoint cut to its method and
    operation first (`grpc …Catalog/GetItem`), then what changed, in the middle (the line below shows the
    values)."""
    endpoint = endpoints[0] if len(endpoints) == 1 else ""
    at = title.rfind(f" on {endpoint}") if endpoint else -1
    if len(title) <= width or at < 0:
        return middle(title, width)
    head, rest = title[:at], title[at + len(" on ") + len(endpoint) :]
    shown = endpoint_tail(endpoint, max(width - len(head) - len(" on ") - len(rest), TITLE_ENDPOINT))
    return middle(middle(head, max(width - len(" on ") - len(shown) - len(rest), 12)) + f" on {shown}{rest}", width)


TITLE_ENDPOINT = 16
"""Characters a finding's title keeps for its endpoint at least, before it cuts what changed."""


def endpoint_tail(endpoint: str, width: int) -> str:
    """`endpoint` in `width` characters by its method and its end, where the operation is named
    (`grpc …Catalog/GetItem`, `GET …/records/{id}`): cut at a `.` or before a `/` when one is near the cut,
    and shortened by `middle` when that would leave fewer than 8 characters of it."""
    if len(endpoint) <= width:
        return endpoint
    method, _, rest = endpoint.partition(" ")
    keep = width - len(method) - len(" …")
    if not rest or keep < 8:
        return middle(endpoint, width)
    tail = rest[len(rest) - keep :]
    separators = [i for i in (tail.find("/"), tail.find(".")) if 0 <= i < keep // 2]
    if separators:
        cut = min(separators)
        tail = tail[cut:] if tail[cut] == "/" else tail[cut + 1 :]
    return f"{method} …{tail}"


def _fit(parts: list[str], width: int) -> str:
    """Parts joined on one line; when too long, the last parts are dropped, then the longest shortened in the middle."""
    parts = [" ".join(part.split()) for part in parts]  # one line: a body excerpt's newlines and indents folded
    while len(" · ".join(parts)) > width and len(parts) > 1 and len(" · ".join(parts[:-1])) >= width // 2:
        parts.pop()  # the least telling part goes first, while what is left still fills half the line
    while (excess := len(" · ".join(parts)) - width) > 0:
        longest = max(range(len(parts)), key=lambda i: len(parts[i]))
        if len(parts[longest]) <= 16:
            break
        parts[longest] = middle(parts[longest], max(len(parts[longest]) - excess, 16))  # the longest gives first
    return middle(" · ".join(parts), width)


def _detail(finding: Finding) -> list[str]:
    """The second line, most telling first: what changed (keys, values or the test), where, an exchange to look at."""
    example = finding.members[0].examples[0].divergence
    several_keys = finding.kind == "body" and sum(map(len, finding.changes.values())) > 1
    if several_keys:
        parts = [f"{change} {_listed(locations, 3)}" for change, locations in finding.changes.items()]
    elif finding.kind == "latency" and finding.members[0].detail:
        parts = [finding.members[0].detail]
    else:
        parts = [f"{_shown(example.baseline)} → {_shown(example.candidate)}"]
    if finding.title.endswith(WIRE_MARK):  # said here, where the title's line has no room for it
        parts.append(WIRE_MARK.strip(" ()"))
    if len(finding.endpoints) > 1:
        parts.append(_listed(finding.endpoints, 3))
    if example.exchange_id:
        parts.append(f"e.g. exchange {example.exchange_id}")
    return parts


def _listed(names: list[str], shown: int) -> str:
    more = f" (+{len(names) - shown})" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _latency(report: DiffReport, console: Console, verbose: bool) -> Group | None:
    """Regressions, then the busiest endpoints; every endpoint with --verbose."""
    if not report.endpoints:
        return None
    ranked = sorted(report.endpoints, key=lambda s: (not s.latency_regression, -s.exchanges, s.endpoint))
    regressions = sum(1 for stats in ranked if stats.latency_regression)
    shown = ranked if verbose else ranked[: max(min(regressions, SHOWN_LATENCY * 2), SHOWN_LATENCY)]
    parts: list[RenderableType] = [_latency_table(shown, console.width)]
    if hidden := len(ranked) - len(shown):
        parts.append(Text(f"  and {_count(hidden, 'more endpoint')} (--verbose)", style="dim"))
    return Group(*parts)


def _latency_table(endpoints: list[EndpointStats], width: int) -> Table:
    rows = [
        (
            stats.endpoint,
            f"{stats.exchanges:,}",
            _percentiles(stats.latency.get("baseline")),
            _percentiles(stats.latency.get("candidate")),
            "–" if stats.paired.median_delta_ms is None else f"{stats.paired.median_delta_ms:+.1f}",
            _ratio(stats),
        )
        for stats in endpoints
    ]
    numbers = [
        max(len(line) for text in (heading, *(row[i + 1] for row in rows)) for line in text.split("\n"))
        for i, heading in enumerate(_NUMBER_COLUMNS)
    ]
    # Each number column costs its width, a space of padding each side and a divider; the edges two more.
    name_width = max(12, width - sum(numbers) - 3 * len(numbers) - 2)
    table = Table(title="Latency (ms)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("endpoint", no_wrap=True, max_width=name_width)
    for heading in _NUMBER_COLUMNS:
        table.add_column(heading, justify="right", no_wrap=True)
    names = distinct_middles([row[0] for row in rows], name_width)
    for stats, row, name in zip(endpoints, rows, names, strict=True):
        table.add_row(name, *row[1:], style="bold red" if stats.latency_regression else None)
    return table


def _ratio(stats: EndpointStats) -> str:
    baseline, candidate = stats.latency.get("baseline"), stats.latency.get("candidate")
    return f"{candidate.p99 / baseline.p99:.2f}" if baseline and candidate and baseline.p99 else "–"


def _percentiles(stats: Percentiles | None) -> str:
    return "–" if stats is None else "/".join(_ms(value) for value in (stats.p50, stats.p95, stats.p99))


def _ms(value: float) -> str:
    """Three significant digits at most: 4.3, 72.6, 385, 2491."""
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _divergences(report: DiffReport, console: Console, verbose: bool) -> Group | None:
    """Every divergence with an example side by side: the evidence behind the findings, with --verbose only."""
    if not verbose or not report.divergences:
        return None
    blocks: list[RenderableType] = [Text("Divergences", style="bold")]
    for number, group in enumerate(report.divergences, start=1):
        blocks += [Text(), _divergence(number, group)]
    return Group(*blocks)


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


def _shown(value: object) -> str:
    return "(absent)" if value is None else str(value)


def _suppressed(report: DiffReport, console: Console, verbose: bool) -> Text | None:
    """Grouped by location across endpoints: `$.generated_at` on 9 endpoints reads better than nine lines."""
    if not report.suppressed:
        return None
    endpoints: defaultdict[str, set[str]] = defaultdict(set)
    for location in report.suppressed:
        where = f"{location.location} ({location.kind})" if location.location else location.kind
        endpoints[where].add(location.endpoint)
    ranked = sorted(endpoints.items(), key=lambda item: (-len(item[1]), item[0]))
    limit = len(ranked) if verbose else _SHOWN_SUPPRESSED
    shown = [f"{where} on {_count(len(names), 'endpoint')}" for where, names in ranked[:limit]]
    if len(ranked) > limit:
        shown.append(f"and {len(ranked) - limit} more")
    text = Text(f"Suppressed as noise: {_count(len(ranked), 'location')} — " + "; ".join(shown), style="dim")
    return text if verbose else _wrapped_at_most(text, console, lines=3)


def _wrapped_at_most(text: Text, console: Console, *, lines: int) -> Text:
    wrapped = text.wrap(console, console.width)
    if len(wrapped) <= lines:
        return text
    kept = Text("\n").join(list(wrapped)[:lines])
    kept.append("…")
    return kept


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


SECTIONS: list[Section] = [_summary, _findings, _fidelity, _latency, _divergences, _suppressed]

