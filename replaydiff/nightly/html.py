"""The night's `report.html`: verdicts of every entry, and trend charts from the history, in one file.

Self-contained like the differ's report (inline CSS and SVG, no script), so
a CI artifact or a mail opens it offline; each entry's full diff report
(examples, latency plots, noise) is its own page, linked from here.
"""

from __future__ import annotations

from collections import Counter
from html import escape

from replaydiff.curation.minimize import describe_curation
from replaydiff.diff.html import COLOURS
from replaydiff.nightly.history import Point, Trends
from replaydiff.nightly.run import EntryResult, Night

STATUS_COLOURS = {"new": "#dc2626", "intermittent": "#9333ea", "known": "#f59e0b", "accepted": "#9ca3af"}
_SPARK_W, _SPARK_H = 140, 28
_BAR_W, _BARS_H = 10, 28

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;
color:#111827;padding:0 16px} h1{font-size:22px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #e5e7eb}
h3{font-size:15px;margin:16px 0 4px} table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #f3f4f6;vertical-align:middle}
td.n{text-align:right;font-variant-numeric:tabular-nums} code{font:12px ui-monospace,Menlo,monospace}
.badge{display:inline-block;padding:1px 8px;border-radius:4px;color:#fff;font-weight:600;font-size:12px}
.pass{background:#16a34a}.fail{background:#dc2626} .dim{color:#6b7280}
"""


def render_run_html(night: Night, trends: Trends) -> str:
    verdict = "pass" if night.passed else "fail"
    sections = [
        f"<h1>replaydiff nightly <span class='badge {verdict}'>{verdict.upper()}</span></h1>",
        f"<p>{escape(night.summary)}</p>",
        f"<p class=dim>run {night.run} · started {night.started:%Y-%m-%d %H:%M} UTC · "
        f"suite <code>{escape(str(night.suite))}</code></p>",
        _entries(night.entries),
        _divergences(night.entries),
        _trends(trends),
    ]
    return (
        "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>replaydiff nightly: {verdict}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def _badge(status: str, label: str = "") -> str:
    colour = STATUS_COLOURS.get(status, "#6b7280")
    return f"<span class=badge style='background:{colour}'>{escape(label or status)}</span>"


def _entries(entries: list[EntryResult]) -> str:
    rows = []
    for result in entries:
        link = (
            f"<a href='entries/{escape(result.entry.slug)}/report.html'>{escape(result.entry.name)}</a>"
            if result.outcome == "ran"
            else escape(result.entry.name)
        )
        compared = f"{result.report.totals.compared:,}" if result.report else "–"
        counts = " ".join(_badge(s, f"{n} {s}") for s in STATUS_COLOURS if (n := len(result.with_status(s))))
        rows.append(
            f"<tr><td>{link}</td><td>{escape(result.outcome)}</td><td class=n>{compared}</td>"
            f"<td>{_fidelity(result)}</td>"
            f"<td>{counts or 'no divergence'}</td>"
            f"<td class=dim>{escape(result.message or describe_curation(result.coverage))}</td></tr>"
        )
    head = "<tr><th>entry</th><th>outcome</th><th>compared</th><th>fidelity</th><th>divergences</th><th></th></tr>"
    return f"<h2>Entries</h2><table>{head}{''.join(rows)}</table>"


def _fidelity(result: EntryResult) -> str:
    """The share of exchanges whose baseline status matched the recording, and the endpoints not tested."""
    if result.report is None or not result.report.fidelity.known:
        return "–"
    endpoints = result.report.fidelity.endpoints
    share = sum(e.matching for e in endpoints) / max(1, sum(e.exchanges for e in endpoints))
    untested = result.report.fidelity.untested
    note = f" <span class=badge style='background:#d97706'>{len(untested)} not tested</span>" if untested else ""
    title = escape("; ".join(result.report.fidelity.reasons()))
    return f"<span title='{title}'>{share:.0%}</span>{note}"


def _divergences(entries: list[EntryResult]) -> str:
    rows = [
        f"<tr><td>{escape(result.entry.name)}</td><td>{_badge(v.status)}{' fails' if v.fails else ''}</td>"
        f"<td><code>{escape(v.group.fingerprint)}</code></td><td class=n>{v.group.count:,}/{v.group.total:,}</td>"
        f"<td>{escape(v.since[:10])} ({v.nights} run{'s' if v.nights > 1 else ''})</td>"
        f"<td class=dim>{escape(v.reason)}</td></tr>"
        for result in entries
        for v in result.judged
    ]
    rows += [
        f"<tr><td>{escape(result.entry.name)}</td><td>{_badge('gone')}</td><td><code>{escape(fingerprint)}</code>"
        "</td><td></td><td></td><td class=dim>shown by the previous run, not by this one</td></tr>"
        for result in entries
        for fingerprint in result.gone
    ]
    if not rows:
        return "<h2>Divergences</h2><p>None.</p>"
    head = ("<tr><th>entry</th><th>status</th><th>fingerprint</th><th>exchanges</th><th>showing since</th>"
            "<th>reason accepted</th></tr>")
    return f"<h2>Divergences</h2><table>{head}{''.join(rows)}</table>"


def _trends(trends: Trends) -> str:
    if not trends:
        return ""
    by_entry: dict[str, list[tuple[str, list[Point]]]] = {}
    for (entry, endpoint), points in trends.items():
        by_entry.setdefault(entry, []).append((endpoint, points))
    parts = ["<h2>Trends</h2><p class=dim>the last runs in the history, oldest first; lines: "
             + " ".join(f"<span style='color:{COLOURS[t]}'>{t}</span>" for t in ("baseline", "candidate"))
             + "; bars: divergences per run by status "
             + " ".join(f"<span style='color:{c}'>{s}</span>" for s, c in STATUS_COLOURS.items()) + "</p>"]  # fmt: skip
    for entry, endpoints in by_entry.items():
        rows = "".join(
            f"<tr><td>{escape(endpoint)}</td><td>{_spark(points, 'p50')}</td><td>{_spark(points, 'p99')}</td>"
            f"<td>{_bars(points)}</td></tr>"
            for endpoint, points in endpoints
        )
        parts.append(
            f"<h3>{escape(entry)}</h3><table><tr><th>endpoint</th><th>p50 ms</th><th>p99 ms</th>"
            f"<th>divergences</th></tr>{rows}</table>"
        )
    return "".join(parts)


def _spark(points: list[Point], quantile: str) -> str:
    """Baseline and candidate on one scale, so a gap between the lines is the candidate's slowdown."""
    series = {t: [getattr(p, f"{t}_{quantile}") for p in points] for t in ("baseline", "candidate")}
    values = [v for line in series.values() for v in line if v is not None]
    if not values:
        return "–"
    top, step = max(values) or 1.0, _SPARK_W / max(len(points) - 1, 1)
    marks = []
    for target, line in series.items():
        xy = [(i * step, _SPARK_H - 2 - v / top * (_SPARK_H - 4)) for i, v in enumerate(line) if v is not None]
        if xy:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
            marks.append(f"<polyline fill=none stroke='{COLOURS[target]}' stroke-width=1.5 points='{path}'/>"
                         f"<circle cx={xy[-1][0]:.1f} cy={xy[-1][1]:.1f} r=2 fill='{COLOURS[target]}'/>")  # fmt: skip
    last = series["candidate"][-1]
    label = f" <span class=dim>{last:.1f}</span>" if last is not None else ""
    title = escape(", ".join(f"{v:.1f}" for v in values))
    return (
        f"<svg width={_SPARK_W + 4} height={_SPARK_H} role=img aria-label='{quantile} over runs'>"
        f"<title>{quantile} per run: {title}</title>{''.join(marks)}</svg>{label}"
    )


def _bars(points: list[Point]) -> str:
    """One stacked bar per run: how many divergences the endpoint showed, coloured by status."""
    counts = [Counter(p.divergences.values()) for p in points]
    top = max((sum(c.values()) for c in counts), default=0) or 1
    rects = []
    for index, count in enumerate(counts):
        y = float(_BARS_H)
        for status, colour in STATUS_COLOURS.items():
            if n := count[status]:
                height = n / top * (_BARS_H - 2)
                y -= height
                rects.append(
                    f"<rect x={index * (_BAR_W + 2)} y={y:.1f} width={_BAR_W} height={height:.1f} fill='{colour}'>"
                    f"<title>run {points[index].run}: {n} {status}</title></rect>"
                )
    width = len(points) * (_BAR_W + 2)
    return f"<svg width={width} height={_BARS_H} role=img aria-label='divergences per run'>{''.join(rects)}</svg>"
