"""The replay client's own retry policy: which outcomes to retry, and how long to back off.

Off by default, so a replay shows the target's first answer; when on, every
attempt is recorded, so retries are visible rather than hidden in a latency.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from replaydiff.corpora import Attempt

DEFAULT_RETRY_ON = frozenset({"502", "503", "504", "timeout", "reset"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 0
    retry_on: frozenset[str] = DEFAULT_RETRY_ON
    """Status codes as strings, and error kinds (timeout, reset, refused, protocol)."""
    backoff_s: float = 0.1
    max_backoff_s: float = 5.0

    @classmethod
    def parse_retry_on(cls, text: str) -> frozenset[str]:
        known = {"timeout", "reset", "refused", "protocol", "other"}
        items = frozenset(part.strip().lower() for part in text.split(",") if part.strip())
        bad = [i for i in items if i not in known and not (i.isdigit() and 100 <= int(i) <= 599)]
        if bad:
            raise ValueError(f"--retry-on: {', '.join(sorted(bad))} is neither a status code nor one of {sorted(known)}")
        return items

    def should_retry(self, attempt: Attempt, attempts_so_far: int) -> bool:
        if attempts_so_far > self.retries:
            return False
        outcome = attempt.error if attempt.error else str(attempt.status)
        return outcome in self.retry_on

    def backoff(self, attempts_so_far: int, rng: random.Random) -> float:
        """Exponential with full jitter, so retries from many sessions do not synchronize."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (attempts_so_far - 1))
        return rng.uniform(0, ceiling)
