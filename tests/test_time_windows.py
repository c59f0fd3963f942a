"""Time attribution (`corpora.windows`): the sweep finds exactly the windows a brute-force scan finds, and a
recording's untraced calls attach only where one exchange was in flight."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replaydiff.corpora import CorpusWriter, Exchange, Request
from replaydiff.corpora.trace import TRACE_TAG, replay_exchange_key
from replaydiff.corpora.windows import ByTime, NoRecordingClock, in_flight, recording_attribution

spans_of = st.tuples(st.integers(0, 100), st.integers(0, 40)).map(lambda span: (span[0], span[0] + span[1]))


@settings(max_examples=200, deadline=None)
@given(spans=st.lists(spans_of, max_size=30), instants=st.lists(st.integers(-5, 150), max_size=30))
def test_the_sweep_finds_every_window_that_contains_an_instant(
    spans: list[tuple[int, int]], instants: list[int]
) -> None:
    found = dict(in_flight(((start, end, n) for n, (start, end) in enumerate(spans)), ((at, at) for at in instants)))
    for at in instants:
        assert sorted(owner for _, owner in found[at]) == [n for n, (s, e) in enumerate(spans) if s <= at <= e]


def _corpus(path: Path, spans: list[tuple[int, int]], *, epoch: int | None) -> list[Exchange]:
    exchanges = [
        Exchange(id=f"x{n}", session="s", start_us=start, duration_us=end - start, response=None,
                 request=Request("GET", "http", "shop", 80, f"/p/{n}"),
                 tags={TRACE_TAG: f"{n:024x}00000000"} if n % 2 else {})  # odd ones carried a trace id
        for n, (start, end) in enumerate(spans)
    ]  # fmt: skip
    with CorpusWriter(path) as writer:
        for exchange in exchanges:
            writer.write(exchange)
        writer.close(**({"epoch_unix_us": epoch} if epoch is not None else {}))
    return exchanges


def test_a_recording_attributes_a_call_only_to_the_one_exchange_in_flight(tmp_path: Path) -> None:
    epoch = 1_700_000_000_000_000
    exchanges = _corpus(tmp_path / "c.jsonl.zst", [(0, 10), (20, 40), (30, 50)], epoch=epoch)
    calls = [(epoch + 5, "alone"), (epoch + 25, "alone too"), (epoch + 35, "two in flight"), (epoch + 60, "none")]
    got = dict(recording_attribution(tmp_path / "c.jsonl.zst", calls))
    key = [replay_exchange_key(x.id, recorded=x.tags.get(TRACE_TAG, "")) for x in exchanges]
    assert (got["alone"].how, got["alone"].exchange_key) == (ByTime.ATTRIBUTED, key[0])  # derived: no trace tag
    assert (got["alone too"].how, got["alone too"].exchange_key) == (ByTime.ATTRIBUTED, f"{1:024x}")  # its tag's
    assert got["two in flight"].how is ByTime.AMBIGUOUS and got["none"].how is ByTime.OUTSIDE


def test_a_corpus_that_does_not_say_when_it_was_recorded_cannot_attribute(tmp_path: Path) -> None:
    _corpus(tmp_path / "c.jsonl.zst", [(0, 10)], epoch=None)
    with pytest.raises(NoRecordingClock):
        list(recording_attribution(tmp_path / "c.jsonl.zst", [(5, "call")]))
