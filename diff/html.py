"""The HTML report: one self-contained file (inline CSS and SVG, no script, no network) to attach to a CI run.

Findings first, each a collapsible block (`<details>`, no script needed)
with its endpoints, the keys it changed, up to three examples side by side
with the answers cut to a bounded excerpt, and its member fingerprints.
Below: the per-endpoint table, a latency distribution plot per endpoint for
every target (drawn here as SVG, so it opens offline and in mail clients),
every divergence as one table row (values only, no bodies), and every
location suppressed as noise with its counts, so a reader can check the
suppression rather than trust it. Its size grows with findings and
endpoints, not with exchanges. Every value from a replay is escaped.

Sections are functions of the report (`SECTIONS`), so another slots in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from html import escape

from replaydiff.diff.findings import DiffReport, DivergenceGroup, EndpointStats, Example, Finding
from replaydiff.diff.latency import Percentiles

COLOURS = {"baseline": "#2563eb", "baseline2": "#9ca3af", "candidate": "#ea580c"}
_PLOT_W, _PLOT_H, _MARGIN = 360, 120, 28

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;
color:#111827;padding:0 16px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #e5e7eb}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:700}
.same{background:#16a34a}.divergent{background:#dc2626}.inconclusive{background:#d97706}
.dim{color:#6b7280} .warn{color:#b45309} code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #f3f4f6}
td.n{text-align:right;font-variant-numeric:tabular-nums} tr.bad td{color:#b91c1c;font-weight:600}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(380px,1fr));gap:12px}
.plot{border:1px solid #e5e7eb;border-radius:6px;padding:6px 8px}
.plot h3{font-size:13px;margin:0 0 2px;overflow-wrap:anywhere}
.legend span{margin-right:12px;font-size:12px} .legend i{display:inline-block;width:14px;height:3px;
vertical-align:middle;margin-right:4px}
.group{border:1px solid #e5e7eb;border-left:4px solid #dc2626;border-radius:6px;padding:8px 12px;margin:12px 0}
.group.passing{border-left-color:#f59e0b}
.kind{color:#b91c1c;font-weight:600} .loc{color:#0e7490}
.side{display:grid;grid-template-columns:1fr 1fr;gap:8px}
.side pre{background:#f9fafb;border:1px solid #e5e7eb;padding:6px;max-height:320px;overflow:auto;margin:4px 0;
white-space:pre-wrap;overflow-wrap:anywhere}
.side h4{margin:4px 0 0;font-size:12px}
details.finding{border:1px solid #e5e7eb;border-left:4px solid #dc2626;border-radius:6px;padding:6px 12px;margin:8px 0}
details.finding.passing{border-left-color:#f59e0b} details.finding>summary{cursor:pointer}
.sev{display:inline-block;min-width:72px;font-weight:700;text-transform:uppercase;font-size:11px}
.critical{color:#991b1b}.high{color:#dc2626}.medium{color:#b45309}.low{color:#0e7490}
details.more>summary{cursor:pointer;font-weight:600;margin:8px 0}
ul.locs{columns:3;margin:4px 0;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
"""
SHOWN_LOCATIONS = 60
"""Changed keys listed per finding; the rest counted."""
OPEN_FINDINGS = 1
"""The first finding is shown expanded; the others are one line each until opened."""

Section = Callable[[DiffReport, set[int]], str]
"""(report, ids of the divergence groups that fail the run) → HTML."""


def render_html(report: DiffReport, *, fail_on: Collection[str] | None = None) -> str:
    failing = {id(group) for group in report.failing(fail_on)}
    sections = [section(report, failing) for section in SECTIONS]
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>replaydiff: {report.verdict}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def _header(report: DiffReport, failing: set[int]) -> str:
    totals = report.totals
    affected = len({group.endpoint for group in report.divergences})
    counts = (
        f"{len(report.findings)} findings from {len(report.divergences)} divergences on {affected} of "
        f"{len(report.endpoints)} endpoints"
        if report.divergences
        else f"{len(report.fidelity.untested)} of {len(report.endpoints)} endpoints not tested"
        if report.verdict == "inconclusive"
        else f"no divergences on {len(report.endpoints)} endpoints"
    )
    targets = " · ".join(f"{escape(name)} <code>{escape(url)}</code>" for name, url in report.targets.items())
    notes = [escape(line) for line in report.warnings()]
    return (
        f"<h1>replaydiff report <span class='verdict {report.verdict}'>{report.verdict.upper()}</span></h1>"
        f"<p>{counts} · {totals.compared:,} exchanges compared · {totals.noise_pairs:,} noise pairs</p>"
        f"<p class=dim>{targets}</p>" + "".join(f"<p class=warn>{note}</p>" for note in notes)
    )


def _findings(report: DiffReport, failing: set[int]) -> str:
    if not report.findings:
        return "<h2>Findings</h2><p>None: the candidate answered like the baseline.</p>"
    blocks = "".join(_finding(n, f, failing) for n, f in enumerate(report.findings, 1))
    return f"<h2>Findings</h2><p class=dim>most severe first; each groups the divergences of one cause</p>{blocks}"


def _finding(number: int, finding: Finding, failing: set[int]) -> str:
    fails = any(id(group) in failing for group in finding.members)
    confirmed = f" <span class=dim>[{escape(finding.confirmation)}]</span>" if finding.confirmation else ""
    summary = (
        f"<summary><b>{number}.</b> <span class='sev {finding.severity}'>{finding.severity}</span> "
        f"{escape(finding.title)}{confirmed} <span class=dim>{finding.exchanges:,}/{finding.total:,} "
        f"({finding.share:.0%})</span>" + ("" if fails else " <span class=dim>(does not fail the run)</span>")
        + "</summary>"
    )
    endpoints = "<p>endpoints: " + ", ".join(f"<code>{escape(e)}</code>" for e in finding.endpoints) + "</p>"
    changes = "".join(_locations(change, locations) for change, locations in finding.changes.items())
    details = [group.detail for group in finding.members if group.detail][:3]
    notes = "".join(f"<p class=dim>{escape(detail)}</p>" for detail in details)
    examples = "".join(_example(example) for example in finding.examples)
    prints = ", ".join(f"<code>{escape(fingerprint)}</code>" for fingerprint in finding.fingerprints)
    footer = f"<p class=dim>fingerprints: {prints}</p>"
    attributes = f"class='finding{'' if fails else ' passing'}'" + (" open" if number <= OPEN_FINDINGS else "")
    return f"<details {attributes}>{summary}{endpoints}{changes}{notes}{examples}{footer}</details>"


def _locations(change: str, locations: list[str]) -> str:
    items = "".join(f"<li>{escape(location)}</li>" for location in locations[:SHOWN_LOCATIONS])
    more = f"<li class=dim>and {len(locations) - SHOWN_LOCATIONS} more</li>" if len(locations) > SHOWN_LOCATIONS else ""
    return f"<p>{escape(change)} ({len(locations)}):</p><ul class=locs>{items}{more}</ul>"


def _endpoints(report: DiffReport, failing: set[int]) -> str:
    return _endpoint_table(report.endpoints)


def _fidelity(report: DiffReport, failing: set[int]) -> str:
    """Per endpoint, the share of exchanges where the baseline answered the recorded status (`diff.fidelity`):
    what was really compared; untested endpoints first, with the reason."""
    if not report.fidelity.known:
        return ""
    rows = "".join(
        f"<tr{' class=bad' if e.untested else ''}><td>{escape(e.endpoint)}</td>"
        f"<td class=n>{e.matching:,}/{e.exchanges:,}</td><td class=n>{e.share:.0%}</td>"
        f"<td class=n>{e.carried:,}</td><td class=n>{e.not_found:,}</td>"
        f"<td>{'not tested: ' + escape(e.reason) if e.untested else ''}</td></tr>"
        for e in sorted(report.fidelity.endpoints, key=lambda e: (not e.untested, e.share, e.endpoint))
    )
    head = ("<tr><th>endpoint</th><th>baseline status = recorded</th><th>fidelity</th><th>values carried</th>"
            "<th>not found</th><th></th></tr>")
    return f"<h2>Fidelity to the recording</h2><table>{head}{rows}</table>"


def _endpoint_table(endpoints: list[EndpointStats]) -> str:
    rows = []
    for stats in endpoints:
        cells = [
            f"<td>{escape(stats.endpoint)}</td>",
            f"<td class=n>{stats.exchanges:,}</td>",
            f"<td class=n>{stats.divergent:,}</td>",
            f"<td class=n>{_percentiles(stats.latency.get('baseline'))}</td>",
            f"<td class=n>{_percentiles(stats.latency.get('candidate'))}</td>",
            f"<td class=n>{_signed(stats.paired.median_delta_ms)}</td>",
        ]
        rows.append(f"<tr{' class=bad' if stats.latency_regression else ''}>{''.join(cells)}</tr>")
    head = (
        "<tr><th>endpoint</th><th>exchanges</th><th>divergent</th><th>baseline p50/p95/p99 ms</th>"
        "<th>candidate p50/p95/p99 ms</th><th>paired median Δ ms</th></tr>"
    )
    return f"<h2>Endpoints</h2><table>{head}{''.join(rows)}</table>"


def _percentiles(stats: Percentiles | None) -> str:
    return "–" if stats is None else f"{stats.p50:.1f} / {stats.p95:.1f} / {stats.p99:.1f}"


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1f}"


def _plots(report: DiffReport, failing: set[int]) -> str:
    legend = "".join(f"<span><i style='background:{c}'></i>{t}</span>" for t, c in COLOURS.items())
    plots = "".join(_plot(stats) for stats in report.endpoints if stats.histograms)
    return (
        "<h2>Latency distributions</h2><p class='legend dim'>share of answers per latency bin (log scale); "
        f"dashed lines: p50 and p99 of baseline and candidate. {legend}</p><div class=plots>{plots}</div>"
    )


def _plot(stats: EndpointStats) -> str:
    """Step lines of each target's share of answers per bin, on a log-scaled time axis."""
    edges = stats.histogram_edges_ms
    low, high = math.log10(edges[0]), math.log10(edges[-1])
    width, height = _PLOT_W - 2 * _MARGIN, _PLOT_H - _MARGIN

    def x(ms: float) -> float:
        return _MARGIN + (math.log10(max(ms, edges[0])) - low) / (high - low) * width

    shares = {t: [n / max(sum(c), 1) for n in c] for t, c in stats.histograms.items()}
    top = max((max(s) for s in shares.values()), default=1.0) or 1.0
    parts = [f"<line x1={_MARGIN} y1={height} x2={_MARGIN + width} y2={height} stroke='#9ca3af'/>"]
    for ms in _ticks(edges[0], edges[-1]):
        parts.append(
            f"<line x1={x(ms):.1f} y1={height} x2={x(ms):.1f} y2={height + 4} stroke='#9ca3af'/>"
            f"<text x={x(ms):.1f} y={height + 15} font-size=10 text-anchor=middle fill='#6b7280'>{ms:g}</text>"
        )
    parts.append(f"<text x={_MARGIN + width} y={height + 26} font-size=10 text-anchor=end fill='#6b7280'>ms</text>")
    for target, share in shares.items():
        points = []
        for index, value in enumerate(share):
            y = height - value / top * (height - 6)
            points += [f"{x(edges[index]):.1f},{y:.1f}", f"{x(edges[index + 1]):.1f},{y:.1f}"]
        colour = COLOURS.get(target, "#000")
        dash = " stroke-dasharray='4 3'" if target == "baseline2" else ""
        parts.append(f"<polyline fill=none stroke='{colour}' stroke-width=1.6{dash} points='{' '.join(points)}'/>")
    for target in ("baseline", "candidate"):
        if (p := stats.latency.get(target)) is not None:
            parts += [
                f"<line x1={x(ms):.1f} y1=4 x2={x(ms):.1f} y2={height} stroke='{COLOURS[target]}' "
                f"stroke-dasharray='2 3' stroke-width=1><title>{target} {label} {ms:.1f} ms</title></line>"
                for label, ms in (("p50", p.p50), ("p99", p.p99))
            ]
    verdict = " · <span class=kind>latency regression</span>" if stats.latency_regression else ""
    return (
        f"<div class=plot><h3>{escape(stats.endpoint)}{verdict}</h3>"
        f"<svg width={_PLOT_W} height={_PLOT_H} viewBox='0 0 {_PLOT_W} {_PLOT_H}' role=img "
        f"aria-label='latency of {escape(stats.endpoint)}'>{''.join(parts)}</svg></div>"
    )


def _ticks(low: float, high: float) -> Iterable[float]:
    """1, 2, 5 × powers of ten inside the axis."""
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for mantissa in (1, 2, 5):
            if low <= (value := mantissa * 10.0**exponent) <= high:
                yield float(f"{value:.6g}")


def _divergences(report: DiffReport, failing: set[int]) -> str:
    """Every divergence as one row: values, no bodies (the findings carry the examples)."""
    if not report.divergences:
        return ""
    rows = "".join(_group(group, id(group) in failing) for group in report.divergences)
    return (
        f"<details class=more><summary>All {len(report.divergences)} divergences</summary><table>"
        "<tr><th>fingerprint</th><th>exchanges</th><th>baseline</th><th>candidate</th></tr>"
        f"{rows}</table></details>"
    )


def _group(group: DivergenceGroup, fails: bool) -> str:
    example = group.examples[0].divergence
    note = "" if fails else " <span class=dim>(does not fail the run)</span>"
    return (
        f"<tr><td><code>{escape(group.fingerprint)}</code>{note}</td><td class=n>{group.count:,}/{group.total:,}</td>"
        f"<td><code>{_value(example.baseline)}</code></td><td><code>{_value(example.candidate)}</code></td></tr>"
    )


def _example(example: Example) -> str:
    found = example.divergence
    where = f"exchange <code>{escape(found.exchange_id)}</code>: " if found.exchange_id else ""
    values = f"<code>{_value(found.baseline)}</code> → <code>{_value(found.candidate)}</code>"
    if not (example.baseline_body or example.candidate_body):
        return f"<p>{where}{values}</p>"
    return (
        f"<p>{where}{values}</p><div class=side>"
        f"<div><h4>baseline</h4><pre>{escape(example.baseline_body)}</pre></div>"
        f"<div><h4>candidate</h4><pre>{escape(example.candidate_body)}</pre></div></div>"
    )


def _value(value: object) -> str:
    return "<i>(absent)</i>" if value is None else escape(str(value))


def _suppressed(report: DiffReport, failing: set[int]) -> str:
    if not report.suppressed:
        return "<h2>Suppressed as noise</h2><p>Nothing: no location differed between baseline and candidate.</p>"
    rows = "".join(
        f"<tr><td>{escape(s.endpoint)}</td><td>{s.kind}</td><td><code>{escape(s.location)}</code></td>"
        f"<td class=n>{s.raw:,}</td><td class=n>{s.noise:,}</td></tr>"
        for s in report.suppressed
    )
    return (
        f"<h2>Suppressed as noise</h2><details class=more><summary>{len(report.suppressed)} locations</summary>"
        "<p class=dim>raw: exchanges where baseline and candidate differed there; "
        "noise: where baseline and baseline2 did. A location is reported only when raw clearly exceeds noise.</p>"
        "<table><tr><th>endpoint</th><th>kind</th><th>location</th><th>raw</th><th>noise</th></tr>"
        f"{rows}</table></details>"
    )


SECTIONS: list[Section] = [_header, _findings, _fidelity, _endpoints, _plots, _divergences, _suppressed]
