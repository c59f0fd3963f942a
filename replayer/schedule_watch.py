"""Saying, while a replay runs, that it cannot keep up with its schedule: one definition for every engine."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

LATE_WARN_SHARE = 0.01
"""Late requests (`session_loop.LATE_SHARE`) in more than this share of a second's requests: said while it runs."""
LATE_WARN_EVERY_S = 5.0
"""At most this often, so a replay that stays behind does not flood its output."""


@dataclass
class ScheduleWatch:
    """Fed the running totals several times a second; calls `say` with one line (starting `behind schedule:`)
    when more than `LATE_WARN_SHARE` of the last second's requests left late for their session's spacing."""

    say: Callable[[str], None]
    since: float = field(default_factory=time.monotonic)
    completed: int = 0
    late: int = 0
    warned: float = float("-inf")

    def check(self, completed: int, late_total: int | None, lags_us: Sequence[int] | None = None) -> None:
        """`completed` and `late_total` so far; `lags_us`, when known, every lag so far in completion order."""
        if (now := time.monotonic()) - self.since < 1.0 or late_total is None:
            return
        done, late = completed - self.completed, late_total - self.late
        if done and late > LATE_WARN_SHARE * done and now - self.warned >= LATE_WARN_EVERY_S:
            self.warned = now
            p99 = ""
            if lags_us is not None and len(lags_us) > self.completed:
                window = sorted(lags_us[self.completed:])  # this second's only: a whole day's is a stall
                p99 = f" (p99 lag {window[int(0.99 * len(window))] / 1000:.0f} ms)"
            self.say(
                f"behind schedule: {late} of the last {done} requests left late{p99}: latency figures now measure "
                "the replayer as much as the targets"
            )
        self.since, self.completed, self.late = now, completed, late_total
