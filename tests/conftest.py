"""Test-wide settings: no timed assertions, and a closing summary of how long the slow tests ran.

Hypothesis's per-example deadline (200 ms by default) is a timed assertion: on a loaded machine it fails
tests whose code is right, so it is off for every property test here; performance is measured in bench/.
"""

from __future__ import annotations

import pytest
from hypothesis import settings

settings.register_profile("replaydiff", deadline=None)
settings.load_profile("replaydiff")

_slow_durations: dict[str, float] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    yield
    if item.get_closest_marker("slow") is not None:
        _slow_durations[item.nodeid] = _slow_durations.get(item.nodeid, 0.0) + call.duration  # setup, call, teardown


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _slow_durations:
        return
    total = sum(_slow_durations.values())
    terminalreporter.write_sep("-", f"slow tests: {len(_slow_durations)} ran in {total:.1f} s")
    for nodeid, seconds in sorted(_slow_durations.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{seconds:8.1f} s  {nodeid}")
