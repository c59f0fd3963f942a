"""The replay's deadline timer: a real timerfd on a real uvloop loop; nobody wakes before their deadline."""

from __future__ import annotations

import asyncio
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replaydiff.eventloop import run_fast
from replaydiff.replayer.deadline_timer import DeadlineTimer
from replaydiff.replayer.session_loop import Wait

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="timerfd is Linux's")


def _wait_for(offset_ns: int, now_ns: int) -> Wait:
    return Wait((offset_ns - (time.perf_counter_ns() - now_ns)) / 1e9, now_ns + offset_ns)


@settings(max_examples=25, deadline=None)
@given(offsets_us=st.lists(st.integers(-2_000, 20_000), min_size=1, max_size=40))
def test_every_waiter_wakes_at_or_after_its_deadline_in_deadline_order(offsets_us: list[int]) -> None:
    async def scenario() -> list[tuple[int, int]]:
        timer = DeadlineTimer(asyncio.get_running_loop())
        assert timer.precise
        woken: list[tuple[int, int]] = []
        start_ns = time.perf_counter_ns()

        async def waiter(index: int, deadline_ns: int) -> None:
            await timer.wait(_wait_for(deadline_ns - start_ns, start_ns))
            woken.append((index, time.perf_counter_ns() - deadline_ns))

        deadlines = [start_ns + offset * 1000 for offset in offsets_us]
        await asyncio.gather(*(waiter(i, d) for i, d in enumerate(deadlines)))
        timer.close()
        return [(i, late) for i, late in woken]

    woken = run_fast(scenario())
    assert all(late_ns >= 0 for _, late_ns in woken), woken
    # woken in deadline order (equal deadlines in the order they began waiting)
    assert [i for i, _ in woken] == sorted(range(len(offsets_us)), key=lambda i: (offsets_us[i], i))


def test_a_cancelled_waiter_leaves_the_others_waiting_and_close_cancels_the_rest() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        timer = DeadlineTimer(asyncio.get_running_loop())
        now = time.perf_counter_ns()
        soon = asyncio.ensure_future(timer.wait(_wait_for(5_000_000, now)))
        sooner = asyncio.ensure_future(timer.wait(_wait_for(2_000_000, now)))
        never = asyncio.ensure_future(timer.wait(_wait_for(3_600 * 10**9, now)))
        await asyncio.sleep(0)
        sooner.cancel()  # the timer is armed for it: the next waiter must still wake
        await asyncio.wait_for(soon, timeout=5)
        timer.close()
        await asyncio.gather(never, return_exceptions=True)
        return soon.done() and not soon.cancelled(), sooner.cancelled(), never.cancelled()

    assert run_fast(scenario()) == (True, True, True)
