"""`replaydiff history` as text: per endpoint, latency over the runs and divergences appearing and disappearing.

Plain text in fixed columns rather than a terminal table, because it is read
in CI logs and pasted into chat as often as in a terminal.
"""

from __future__ import annotations

from replaydiff.nightly.history import Trends

_SPARKS = "▁▂▃▄▅▆▇█"
_HEADER = f"  {'run':>5}  {'started':<19} {'n':>6}  {'baseline p50/p99':>17}  {'candidate p50/p99':>17}  divergences"


def render_trends(trends: Trends) -> str:
    if not trends:
        return "no finished nightly runs in the history (or no endpoint matches)"
    blocks = []
    for (entry, endpoint), points in trends.items():
        lines = [f"{entry} · {endpoint}", _HEADER]
        previous: dict[str, str] = {}
        for point in points:
            lines.append(
                f"  {point.run:>5}  {point.started[:19].replace('T', ' '):<19} {point.exchanges:>6}  "
                f"{_pair(point.baseline_p50, point.baseline_p99):>17}  "
                f"{_pair(point.candidate_p50, point.candidate_p99):>17}  {_changes(previous, point.divergences)}"
            )
            previous = point.divergences
        lines.append(
            f"  candidate p50 {_sparkline([p.candidate_p50 for p in points])}  "
            f"p99 {_sparkline([p.candidate_p99 for p in points])}"
        )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _pair(p50: float | None, p99: float | None) -> str:
    return "–" if p50 is None or p99 is None else f"{p50:.1f} / {p99:.1f}"


def _changes(before: dict[str, str], now: dict[str, str]) -> str:
    """`+` appeared and `−` disappeared; `=` still there, named when its status changed (new → known, accepted)."""
    appeared = [f"+{_where(fp)} ({status})" for fp, status in now.items() if fp not in before]
    disappeared = [f"−{_where(fp)}" for fp in before if fp not in now]
    changed = [f"={_where(fp)} ({status})" for fp, status in now.items() if before.get(fp, status) != status]
    same = sum(1 for fp, status in now.items() if before.get(fp) == status)
    return "  ".join(appeared + disappeared + changed + ([f"={same}"] if same else [])) or "–"


def _where(fingerprint: str) -> str:
    """The endpoint heads the block: kind and location are what tell divergences apart."""
    _, kind, location = fingerprint.split("|", 2)
    return f"{kind} {location}".strip()


def _sparkline(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "–"
    low, high = min(known), max(known)
    span = (high - low) or 1.0
    return "".join(" " if v is None else _SPARKS[round((v - low) / span * (len(_SPARKS) - 1))] for v in values)


