"""The session loop both engines run, as the pure decision it is: driven here by a simulated clock.

Both engines (asyncio, locust) run `SessionLoop.steps` (tests/test_locust_engine.py checks on real servers that
they send the same plan); these properties pin down what that plan is.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from replaydiff.corpora import Exchange, Request
from replaydiff.replayer.engine import ReplayOptions
from replaydiff.replayer.plan import PlannedRequest
from replaydiff.replayer.session_loop import LATE_FLOOR_S, LATE_SHARE, Send, SessionLoop, Wait


@dataclass
class SimulatedClock:
    ns: int = 0

    def __call__(self) -> int:
        return self.ns


def _planned(rows: list[tuple[float, float]]) -> list[PlannedRequest]:
    request = Request("GET", "http", "h", 80, "/")
    return [PlannedRequest(Exchange(id=str(i), session="s", start_us=0, request=request, response=None), "GET /",
                           due_s, think_s)
            for i, (due_s, think_s) in enumerate(rows)]


def _timer(seconds: float) -> int:
    """A coarse timer, as uvloop's: the wait rounded to whole milliseconds (so possibly early), in ns."""
    return max(1_000, round(seconds * 1000) * 1_000_000)


def _drive(planned: list[PlannedRequest], answers_s: list[float], late_s: list[float], *,
           concurrency: int | None = None, sends: list[Send] | None = None) -> list[tuple[float, float]]:
    """(sent at, lag) per request: the engine waits on a coarse timer, wakes `late_s` late from the waits of
    each request (busy elsewhere), and its targets answer in `answers_s`."""
    clock = SimulatedClock()
    loop = SessionLoop(ReplayOptions(concurrency=concurrency), clock=clock)
    session = None
    for request in planned:
        session = loop.enqueue(request) or session
    assert session is not None
    sent: list[tuple[float, float]] = []
    late_for = -1
    for step in loop.steps(session):
        if isinstance(step, Wait):
            assert step.seconds > 0
            clock.ns += _timer(step.seconds)
            if late_for != len(sent):
                late_for = len(sent)
                clock.ns += int(late_s[len(sent)] * 1e9)
            continue
        assert isinstance(step, Send)
        if sends is not None:
            sends.append(step)
        sent.append((clock.ns / 1e9, step.lag_us / 1e6))
        clock.ns += int(answers_s[len(sent) - 1] * 1e9)
    assert not session.busy
    return sent


sessions = st.lists(st.tuples(st.floats(0, 5), st.floats(0, 2)), min_size=1, max_size=12).map(
    lambda rows: _planned(sorted(rows)))
durations = st.lists(st.floats(0, 1), min_size=12, max_size=12)


@example(planned=_planned([(0.001, 0.0), (1.0, 1.0)]), answers_s=[0.0] * 12, late_s=[1.0] + [0.0] * 11)
@given(planned=sessions, answers_s=durations, late_s=durations)
def test_a_request_never_leaves_before_its_due_time_nor_before_its_think_time(
    planned: list[PlannedRequest], answers_s: list[float], late_s: list[float]
) -> None:
    sent = _drive(planned, answers_s, late_s)
    assert len(sent) == len(planned)
    for number, (request, (sent_s, lag_s)) in enumerate(zip(planned, sent)):
        assert sent_s >= request.due_s - 1e-6
        assert lag_s >= 0
        if number:
            previous_sent_s, previous_lag_s = sent[number - 1]
            on_time_answers_s = previous_sent_s - previous_lag_s + answers_s[number - 1]
            # lags are kept in whole microseconds: the previous one may be short by up to 1 µs, and a punctual
            # engine sends exactly when due, with no slack left to hide that
            assert sent_s - lag_s >= on_time_answers_s + request.think_s - 2e-6


@given(planned=sessions, answers_s=durations, late_s=durations)
def test_the_replayers_own_lateness_does_not_move_the_sessions_later_requests(
    planned: list[PlannedRequest], answers_s: list[float], late_s: list[float]
) -> None:
    """Think time counts from when the answers would have come had the request left on time: with the same
    answer times, a punctual engine and a late one plan every request for the same moment."""
    punctual = [sent_s - lag_s for sent_s, lag_s in _drive(planned, answers_s, [0.0] * 12)]
    late = [sent_s - lag_s for sent_s, lag_s in _drive(planned, answers_s, late_s)]
    assert late == pytest.approx(punctual, abs=1e-5)


@given(planned=sessions, answers_s=durations)
def test_closed_loop_sends_each_request_as_soon_as_the_previous_answers_came(
    planned: list[PlannedRequest], answers_s: list[float]
) -> None:
    sent = _drive(planned, answers_s, [0.0] * 12, concurrency=4)
    clock_s = 0.0
    for number, (sent_s, lag_s) in enumerate(sent):
        assert lag_s == 0 and abs(sent_s - clock_s) < 1e-6
        clock_s = sent_s + answers_s[number]


@given(planned=sessions, answers_s=durations, late_s=durations)
def test_a_request_is_late_when_its_lag_exceeds_a_share_of_its_sessions_recorded_spacing(
    planned: list[PlannedRequest], answers_s: list[float], late_s: list[float]
) -> None:
    """Relative to the schedule: the same lag is late between requests recorded 10 ms apart and on time between
    requests recorded a minute apart; never late within the floor a bare timer needs."""
    sends: list[Send] = []
    _drive(planned, answers_s, late_s, sends=sends)
    for number, send in enumerate(sends):
        spacing_s = planned[number].due_s - planned[number - 1].due_s if number else 0.0
        allowed_s = max(LATE_FLOOR_S, LATE_SHARE * spacing_s)
        assert send.late_after_us == pytest.approx(allowed_s * 1e6, abs=1)
        assert send.late == (send.lag_us > send.late_after_us)
        if send.lag_us <= LATE_FLOOR_S * 1e6:
            assert not send.late
