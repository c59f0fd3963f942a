"""Time attribution: which requests were in flight when a dependency call started.

One definition for both sides of a tap's log. A replay attributes the calls of
a service that does not propagate `traceparent` to the replayed request in
flight (`replayer.upstream`); a recording attributes them to the recorded
exchange in flight (`recording_attribution`, used by `inspect --upstream` and
by the mock). Both clocks are wall-clock Unix microseconds: the tap stamps each
call with `time.time()`, the recorder and the replayer store their exchanges as
offsets from an `epoch_unix_us` they write in their file's end record. So the
processes must share a clock: run them on one machine (or NTP-synced ones,
within the clock skew).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TypeVar

from replaydiff.corpora.files import CorpusReader
from replaydiff.corpora.trace import TRACE_TAG, replay_exchange_key

Owner = TypeVar("Owner")
Item = TypeVar("Item")


def in_flight(
    windows: Iterable[tuple[int, int, Owner]], instants: Iterable[tuple[int, Item]]
) -> Iterator[tuple[Item, list[tuple[int, Owner]]]]:
    """For each instant, the windows (start, end, owner) that contain it, as (start, owner) pairs.

    One sweep over both sorted: O((windows + instants) log windows), however long a window lasts (a bisect
    on starts alone would have to scan back over every request that might still be in flight)."""
    ordered = sorted(windows, key=lambda window: window[0])
    open_windows: list[tuple[int, int, int, Owner]] = []  # (end, arrival, start, owner): a heap by end
    position = 0
    for at, item in sorted(instants, key=lambda instant: instant[0]):
        while position < len(ordered) and ordered[position][0] <= at:
            start, end, owner = ordered[position]
            heapq.heappush(open_windows, (end, position, start, owner))
            position += 1
        while open_windows and open_windows[0][0] < at:
            heapq.heappop(open_windows)
        yield item, [(start, owner) for _, _, start, owner in open_windows]


class ByTime(Enum):
    """How a call without a trace id relates to the recorded exchanges in flight when it started."""

    ATTRIBUTED = "by time (approximate)"
    """Exactly one exchange was in flight: the call is its (approximately: the service said nothing)."""
    AMBIGUOUS = "ambiguous"
    """Several were: the call could be any one's, so it is attached to none."""
    OUTSIDE = "outside any exchange"
    """None was: a call the service made on its own (start-up, a timer), or one the corpus does not cover."""


@dataclass(frozen=True, slots=True)
class Attribution:
    how: ByTime
    exchange_key: str = ""
    """With ATTRIBUTED: the exchange part of the trace id a replay of the exchange sends (`corpora.trace`)."""


class NoRecordingClock(Exception):
    """The corpus does not say when it was recorded (no `epoch_unix_us` in its end record): recorded before
    replaydiff wrote it, cut short, or rewritten by a tool that drops it."""


def recording_attribution(corpus: Path, calls: Iterable[tuple[int, Item]]) -> Iterator[tuple[Item, Attribution]]:
    """For each (call start in Unix µs, item) with no trace id, how it attaches to `corpus`'s exchanges by time.

    Only an unambiguous window attaches: a recording's service had one request in flight, or the call is
    left unattached, rather than guessed (a mock answering one exchange with another's call is worse than a
    mock that looks across the recording)."""
    windows, epoch_unix_us = _recorded_windows(corpus)
    if epoch_unix_us is None:
        raise NoRecordingClock(corpus)
    shifted = ((start + epoch_unix_us, end + epoch_unix_us, key) for start, end, key in windows)
    for item, owners in in_flight(shifted, calls):
        if len(owners) == 1:
            yield item, Attribution(ByTime.ATTRIBUTED, owners[0][1])
        else:
            yield item, Attribution(ByTime.AMBIGUOUS if owners else ByTime.OUTSIDE)


def _recorded_windows(corpus: Path) -> tuple[list[tuple[int, int, str]], int | None]:
    reader = CorpusReader(corpus)
    windows = [
        (
            exchange.start_us,
            exchange.start_us + exchange.duration_us,
            replay_exchange_key(exchange.id, recorded=exchange.tags.get(TRACE_TAG, "")),
        )
        for exchange in reader
    ]
    epoch = reader.end.get("epoch_unix_us")
    return windows, int(epoch) if isinstance(epoch, int) else None
