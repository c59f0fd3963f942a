"""How the replay's event loops run, in the command's process and in each replay process alike."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import TypeVar

import uvloop

from replaydiff.corpora import ResultsWriter

T = TypeVar("T")


def run_fast(coroutine: Coroutine[None, None, T]) -> T:
    """uvloop: the same asyncio API at about half the event loop's cost per request, which a replay
    otherwise spends on every socket read, write and timer. (Its timers count whole milliseconds: due
    times are waited for on `replayer.deadline_timer` instead.)"""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


@contextlib.asynccontextmanager
async def flushing(writer: ResultsWriter) -> AsyncIterator[None]:
    """Quiet stretches of a replay still reach disk within a second."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.5)
            writer.flush_if_due()

    ticker = asyncio.create_task(tick())
    try:
        yield
    finally:
        ticker.cancel()
