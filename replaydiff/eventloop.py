"""How the replay's event loops run, in the command's process and in each replay process alike."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncIterator, Coroutine
from typing import TypeVar

import uvloop

from replaydiff.corpora import ResultsWriter

T = TypeVar("T")


def run_fast(coroutine: Coroutine[None, None, T]) -> T:
    """uvloop: the same asyncio API at about half the event loop's cost per request, which a replay
    otherwise spends on every socket read, write and timer. (Its timers count whole milliseconds: due
    times are waited for on `replayer.deadline_timer` instead.)

    In the main thread SIGTERM stops the coroutine as Ctrl-C does (asyncio cancels it, and the caller gets
    KeyboardInterrupt), so what it was writing is closed. The loop's own handler, because a KeyboardInterrupt
    raised by a plain signal handler inside uvloop's protocol callbacks would be taken as that connection's
    error, and the replay would go on."""
    terminated = False

    async def stoppable() -> T:
        nonlocal terminated
        loop, main = asyncio.get_running_loop(), asyncio.current_task()
        assert main is not None
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            return await coroutine

        def terminate() -> None:
            nonlocal terminated
            terminated = True
            main.cancel()

        before = signal.getsignal(signal.SIGTERM)
        loop.add_signal_handler(signal.SIGTERM, terminate)
        try:
            return await coroutine
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, before)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        try:
            return runner.run(stoppable())
        except asyncio.CancelledError:
            if terminated:
                raise KeyboardInterrupt from None
            raise


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
