"""Session state kept for both engines: made once, forgotten only when idle and old."""

from __future__ import annotations

from dataclasses import dataclass

from replaydiff.replayer.sessions import SessionTable


@dataclass
class _State:
    busy: bool = False


def test_a_session_keeps_its_state_and_only_idle_old_sessions_are_forgotten() -> None:
    table: SessionTable[_State] = SessionTable(_State, busy=lambda s: s.busy, keep=2)
    first = table.get("a")
    first.busy = True
    assert table.get("a") is first
    table.get("b")
    table.get("c")  # over the limit, but the oldest ("a") is busy: nothing is forgotten yet
    assert len(list(table)) == 3
    first.busy = False
    table.get("d")  # now "a", idle and oldest, goes; then "b"
    assert len(list(table)) == 2
    assert table.get("a") is not first  # made anew
    assert len(list(table)) == 2
