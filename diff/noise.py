"""Diffy's noise rule: report a location only where the candidate differs clearly more than the baseline from itself.

Two calls to the same build differ in timestamps, request ids and random
orderings. Replaying every request to baseline, baseline2 and candidate at
the same moment measures that noise per endpoint and location: `raw`
exchanges where baseline and candidate differ there, `noise` exchanges where
baseline and baseline2 do. A location every call changes has raw ≈ noise and
stays out of the report; a real change has raw ≫ noise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TypeVar

Location = TypeVar("Location", bound=Hashable)


@dataclass(frozen=True)
class NoiseThresholds:
    relative: float = 0.20
    """Of raw + noise: ignores a location whose candidate count is within sampling jitter of its noise count."""
    absolute: float = 0.0003
    """Of the endpoint's exchanges: ignores a handful of differences among very many exchanges."""

    def __post_init__(self) -> None:
        if not (0 <= self.relative < 1 and 0 <= self.absolute < 1):
            raise ValueError(f"noise thresholds must be in [0, 1): relative={self.relative}, absolute={self.absolute}")


def is_signal(raw: int, noise: int, total: int, thresholds: NoiseThresholds) -> bool:
    """raw > noise, and the excess is large both relative to raw + noise and to the endpoint's exchanges."""
    if raw <= noise or total <= 0:
        return False
    excess = raw - noise
    return excess / (raw + noise) > thresholds.relative and excess / total > thresholds.absolute


def split_signal(
    raw: Counter[Location],
    noise: Counter[Location],
    total: int,
    thresholds: NoiseThresholds,
) -> tuple[list[Location], list[Location]]:
    """The locations where baseline and candidate differed: (reported, suppressed as noise), in `raw`'s order."""
    reported: list[Location] = []
    suppressed: list[Location] = []
    for location, count in raw.items():
        signal = is_signal(count, noise[location], total, thresholds)
        (reported if signal else suppressed).append(location)
    return reported, suppressed
