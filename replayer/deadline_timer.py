"""Waits that end when due, to a few microseconds: a Linux timerfd on the event loop, not uvloop's timers.

uvloop (libuv) counts its timers in whole milliseconds, so a request due at
a given microsecond left up to a millisecond and a half later, and half a
millisecond of slack (`session_loop.TIMER_SLACK_S`) was needed for it never
to leave early. Measured (200 sessions waiting on a 1,000/s schedule, one
bare loop each, same minute, 2-core VM): uvloop's timers woke p50 0.8 ms,
p99 1.6-1.8 ms late; a timerfd armed at each due time, p50 0.07-0.08 ms, p99
0.16-0.26 ms.

One timerfd per event loop, armed (absolute, on CLOCK_MONOTONIC: the clock of
`time.perf_counter_ns` on Linux, which the session loop's due times are on)
at the earliest deadline waited for; when it fires, every waiter due is woken.
Python has `os.timerfd_*` from 3.13 only, and no well-kept package wraps it,
so before that it is two libc calls through ctypes. Where there is no timerfd
(not Linux) the loop's own timer waits, with the slack.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import heapq
import itertools
import os
import sys
import time
from collections.abc import Callable

from replaydiff.replayer.session_loop import TIMER_SLACK_S, Wait

_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1

ArmTimer = Callable[[int, int], None]
"""(timer fd, deadline in monotonic nanoseconds) → None."""


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _timerfd() -> tuple[int, ArmTimer] | None:
    """A non-blocking timerfd on CLOCK_MONOTONIC and how to arm it; None where there is none to have."""
    if not sys.platform.startswith("linux"):
        return None
    if "CLOCK_MONOTONIC" not in time.get_clock_info("perf_counter").implementation:
        return None  # the due times would be on another clock than the timer's
    flags = os.O_NONBLOCK | os.O_CLOEXEC  # TFD_NONBLOCK and TFD_CLOEXEC are these values on Linux
    if hasattr(os, "timerfd_create"):  # Python 3.13+
        fd = os.timerfd_create(time.CLOCK_MONOTONIC, flags=flags)  # type: ignore[attr-defined,unused-ignore]

        def arm_os(fd: int, deadline_ns: int) -> None:
            os.timerfd_settime_ns(fd, flags=os.TFD_TIMER_ABSTIME, initial=deadline_ns)  # type: ignore[attr-defined,unused-ignore]

        return fd, arm_os
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    create.argtypes = [ctypes.c_int, ctypes.c_int]
    settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p]
    fd = create(_CLOCK_MONOTONIC, flags)
    if fd < 0:
        return None
    spec = _Itimerspec()

    def arm_libc(fd: int, deadline_ns: int) -> None:
        spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(max(deadline_ns, 1), 1_000_000_000)
        if settime(fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    return fd, arm_libc


class DeadlineTimer:
    """`await timer.wait(step)` ends at the step's deadline (never before it, as the session loop checks)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._armed_ns: int | None = None
        timer = _timerfd()
        self._fd, self._arm = timer if timer is not None else (-1, None)
        if self._fd >= 0:
            loop.add_reader(self._fd, self._fire)

    @property
    def precise(self) -> bool:
        return self._fd >= 0

    async def wait(self, step: Wait) -> None:
        if self._fd < 0:
            await asyncio.sleep(step.seconds + TIMER_SLACK_S)
            return
        due = self._loop.create_future()
        heapq.heappush(self._waiting, (step.deadline_ns, next(self._order), due))
        if self._waiting[0][2] is due:
            self._arm_at(step.deadline_ns)
        await due

    def close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        for _, _, due in self._waiting:
            due.cancel()
        self._waiting.clear()

    def _arm_at(self, deadline_ns: int) -> None:
        if deadline_ns != self._armed_ns and self._arm is not None:
            self._armed_ns = deadline_ns
            self._arm(self._fd, deadline_ns)

    def _fire(self) -> None:
        try:
            os.read(self._fd, 8)  # the expiry count: reading it clears the fd's readiness
        except BlockingIOError:
            pass
        self._armed_ns = None
        now_ns = time.perf_counter_ns()
        waiting = self._waiting
        while waiting and waiting[0][0] <= now_ns:
            _, _, due = heapq.heappop(waiting)
            if not due.done():  # a waiter cancelled (its task was) leaves its entry behind
                due.set_result(None)
        if waiting:
            self._arm_at(waiting[0][0])

