"""The session's closing summary says how long the slow tests ran (`make test` runs them in a bounded form)."""

from __future__ import annotations

import pytest

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
