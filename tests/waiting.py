"""Waiting for a state by polling it, never by sleeping a fixed time: as fast as the machine allows, as patient as
a loaded one needs."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from replaydiff.corpora import CorpusError, CorpusTruncated, ResultsReader

T = TypeVar("T")


def wait_until(condition: Callable[[], T], what: str, *, timeout_s: float = 30.0, interval_s: float = 0.05) -> T:
    """Polls `condition` until it returns something true and returns that; fails naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        if result := condition():
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}")
        time.sleep(interval_s)


def readable_records(path: Path, reader: Callable[[Path], Iterable[object]] = ResultsReader) -> int:
    """Records readable so far from a corpus or results file that is still being written (its frames are flushed
    every second); 0 while it is not there or has not even its header on disk."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorpusTruncated)
        try:
            return sum(1 for _ in reader(path))
        except CorpusError:
            return 0
