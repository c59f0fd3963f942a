"""The planner as a pure function: order, timing and selection, for any corpus."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from replaydiff.corpora import Exchange, Request
from replaydiff.replayer.plan import Pacing, Selection, in_start_order, plan


def _exchange(i: int, session: int, start_us: int, method: str = "GET") -> Exchange:
    return Exchange(id=str(i), session=f"s{session}", start_us=start_us, duration_us=500,
                    request=Request(method, "http", "h", 80, f"/items/{i}"), response=None)


corpora_ = st.lists(
    st.tuples(st.integers(0, 5), st.integers(0, 10_000_000), st.sampled_from(["GET", "POST"])), max_size=60
).map(lambda rows: [_exchange(i, s, t, m) for i, (s, t, m) in enumerate(rows)])


@settings(max_examples=200)
@given(exchanges=corpora_, speed=st.floats(0.1, 50))
def test_sessions_keep_recorded_order_and_due_times_scale(exchanges: list[Exchange], speed: float) -> None:
    planned = list(plan([exchanges], pacing=Pacing(speed=speed)))
    assert sorted(p.exchange.id for p in planned) == sorted(e.id for e in exchanges)
    dues = [p.due_s for p in planned]
    assert dues == sorted(dues)
    if exchanges:
        first = min(e.start_us for e in exchanges)
        previous_end: dict[str, int] = {}
        for p in planned:
            assert abs(p.due_s - (p.exchange.start_us - first) / 1e6 / speed) < 1e-6
            # think time: the recorded pause since the session's previous answer, never negative, scaled
            ended = previous_end.get(p.exchange.session)
            expected_think_s = 0.0 if ended is None else max(0, p.exchange.start_us - ended) / 1e6 / speed
            assert abs(p.think_s - expected_think_s) < 1e-9
            previous_end[p.exchange.session] = p.exchange.start_us + p.exchange.duration_us


@given(exchanges=corpora_, rate=st.floats(1, 1000), loops=st.integers(1, 3))
def test_fixed_rate_loops_give_distinct_ids_at_even_spacing(exchanges: list[Exchange], rate: float, loops: int) -> None:
    planned = list(plan([exchanges] * loops, pacing=Pacing(rate=rate), selection=Selection(loops=loops)))
    assert len(planned) == len(exchanges) * loops
    assert len({p.exchange.id for p in planned}) == len(planned)
    for earlier, later in zip(planned, planned[1:]):
        assert abs((later.due_s - earlier.due_s) - 1 / rate) < 1e-6


@given(exchanges=corpora_, limit=st.integers(1, 20))
def test_filter_and_limit_select_a_prefix_of_the_matching(exchanges: list[Exchange], limit: int) -> None:
    planned = list(plan([exchanges], selection=Selection(filters=("POST",), limit=limit)))
    posts = [e for e in in_start_order(exchanges) if e.request.method == "POST"]
    assert [p.exchange.id for p in planned] == [e.id for e in posts[:limit]]
    assert all(p.endpoint == "POST /items/{id}" for p in planned)


def test_duration_repeats_until_enough_time_is_planned() -> None:
    exchanges = [_exchange(i, 0, i * 100_000) for i in range(10)]  # 0.9 s per pass
    planned = list(plan((exchanges for _ in range(100)), selection=Selection(duration_s=3.0)))
    assert 3.0 - 1.0 <= planned[-1].due_s <= 3.0
    assert len(planned) == 33  # passes start at 0, 0.901, 1.802, 2.703 s; the last one is cut at 3 s


def test_reorder_window_sorts_a_nearly_sorted_stream() -> None:
    shuffled = [_exchange(i, 0, t) for i, t in enumerate([3, 1, 2, 6, 4, 5, 9, 7, 8])]
    assert [e.start_us for e in in_start_order(shuffled, window=3)] == list(range(1, 10))
