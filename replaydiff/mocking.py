"""`run --mock-upstreams`: a mocking tap for the length of one run, and the check that its recording fits the corpus.

The targets are configured by the user to call the routes' ports (e.g. the
service's INVENTORY_URL=http://127.0.0.1:9001); the mock answers there from
the recording, and its log of the calls is joined into the results as a tap's
log always is.
"""

from __future__ import annotations

import re
import sys
import tempfile
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from replaydiff.corpora import CorpusError, CorpusReader, CorpusTruncated, UpstreamLogReader
from replaydiff.corpora.trace import TRACE_TAG, exchange_key, replay_exchange_key
from replaydiff.corpora.windows import ByTime, NoRecordingClock, recording_attribution
from replaydiff.errors import UserError
from replaydiff.tapping import TapProcess, TapProcessError


def corpus_exchange_keys(corpus: Path, *, trace_salt: str = "") -> set[str]:
    """The exchange part of the trace ids a replay of `corpus` sends (the same for every target)."""
    return {
        replay_exchange_key(exchange.id, recorded=exchange.tags.get(TRACE_TAG, ""), run_salt=trace_salt)
        for exchange in CorpusReader(corpus)
    }


ATTACHMENTS = (
    "by trace id", ByTime.ATTRIBUTED.value, ByTime.AMBIGUOUS.value, ByTime.OUTSIDE.value, "no trace id",
    "another corpus", "no answer",
)  # fmt: skip
"""How a recorded call joins the corpus: exactly by its exchange's trace id; by time, the one exchange in
flight when it started (`corpora.windows`: the service did not propagate `traceparent`); not at all, because
several were in flight, or none, or the corpus does not say when it was recorded (`no trace id`: a mock
matches these across the recording only); under a trace id no exchange of the corpus has; or it has no answer
to mock with (a failed call, or a log of outcomes only)."""


@dataclass(slots=True)
class Attachment:
    """How a recorded upstream log joins a corpus."""

    calls: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """Per dependency, how many calls attach, and how (`ATTACHMENTS`)."""
    exchanges: set[str] = field(default_factory=set)
    """The exchange keys at least one call attaches to."""
    clockless: bool = False
    """Calls without a trace id could not be attributed by time: the corpus has no `epoch_unix_us`."""
    corpus_exchanges: int = 0
    """Distinct exchange keys in the corpus."""


def upstream_attachment(corpus: Path, log: Path, *, trace_salt: str = "") -> Attachment:
    """Per dependency, how many calls of `log` join `corpus`'s exchanges, and how (`inspect --upstream`, and
    the check that a mock's recording fits the corpus it replays)."""
    keys = corpus_exchange_keys(corpus, trace_salt=trace_salt)
    attachment = Attachment(corpus_exchanges=len(keys))
    untraced: list[tuple[int, str]] = []
    for call in UpstreamLogReader(log):
        dependency = call.dependency.rpartition("/")[2]
        if call.answer is None:
            attachment.calls[dependency]["no answer"] += 1
        elif not call.trace_id:
            untraced.append((call.start_us, dependency))
        elif (key := exchange_key(call.trace_id)) in keys:
            attachment.calls[dependency]["by trace id"] += 1
            attachment.exchanges.add(key)
        else:
            attachment.calls[dependency]["another corpus"] += 1
    if not untraced:
        return attachment
    try:
        for dependency, attribution in recording_attribution(corpus, untraced):
            attachment.calls[dependency][attribution.how.value] += 1
            if attribution.how is ByTime.ATTRIBUTED:
                attachment.exchanges.add(attribution.exchange_key)
    except NoRecordingClock:
        attachment.clockless = True
        for _, dependency in untraced:
            attachment.calls[dependency]["no trace id"] += 1
    return attachment


def recording_fit(corpus: Path, recording: Path, *, trace_salt: str = "") -> tuple[int, int]:
    """(exchanges of the corpus the recording has calls for, exchanges in the corpus); a recording with none
    is refused: it was made for another corpus (or with another --trace-salt), so every call would be a guess."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CorpusTruncated)  # the mock itself warns about a damaged log once
            attachment = upstream_attachment(corpus, recording, trace_salt=trace_salt)
    except CorpusError as exc:
        raise UserError(f"--mock-upstreams: {exc}") from None
    if not attachment.exchanges:
        untimed = " and the corpus does not say when it was recorded" if attachment.clockless else ""
        raise UserError(
            f"--mock-upstreams {recording}: no call of any exchange of {corpus} (no trace id in common, none "
            f"attributable by time{untimed}); give the upstream log a tap wrote while this corpus was recorded "
            "(record --inject-traceparent) or replayed, without --trace-salt"
        )
    return len(attachment.exchanges), attachment.corpus_exchanges


@contextmanager
def mocked_upstreams(
    recording: Path, routes: tuple[str, ...], *, on_miss: str, corpus: Path
) -> Iterator[tuple[Path, str]]:
    """Yields (the mock's log of the calls, its listening announcement) while the mock runs; `corpus` is the
    one replayed, which the recording's untraced calls are attributed to by time."""
    if not routes:
        raise UserError("--mock-upstreams needs --route NAME=@PORT for each dependency the targets call")
    with tempfile.TemporaryDirectory(prefix="replaydiff-mock-") as scratch:
        log = Path(scratch) / "upstream.jsonl.zst"
        arguments = [*(item for route in routes for item in ("--route", route)), "--mock", str(recording),
                     "--mock-corpus", str(corpus), "--on-miss", on_miss, "-o", str(log),
                     "--confdir", str(Path(scratch) / "mitmproxy")]  # fmt: skip
        tap = TapProcess(arguments)
        try:
            announced = tap.start()
        except TapProcessError as exc:
            raise UserError(f"the mock did not start: {exc}") from None
        try:
            yield log, announced
        finally:
            tap.stop()
            if said := re.search(r"wrote (\d+) upstream calls .*\(mock: (.*)\)$", tap.farewell):
                print(f"mock: {said.group(1)} calls answered ({said.group(2)})", file=sys.stderr, flush=True)
