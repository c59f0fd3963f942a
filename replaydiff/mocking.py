"""`run --mock-upstreams`: a mocking tap for the length of one run, and the check that its recording fits the corpus.

The targets are configured by the user to call the routes' ports (e.g. the
service's INVENTORY_URL=http://127.0.0.1:9001); the mock answers there from
the recording, and its log of the calls is joined into the results as a tap's
log always is.
"""

from __future__ import annotations

import tempfile
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from replaydiff.corpora import CorpusError, CorpusReader, CorpusTruncated, UpstreamLogReader
from replaydiff.corpora.trace import TRACE_TAG, exchange_key
from replaydiff.errors import UserError
from replaydiff.replayer.tracing import trace_id_for
from replaydiff.tapping import TapProcess, TapProcessError


def corpus_exchange_keys(corpus: Path, *, trace_salt: str = "") -> set[str]:
    """The exchange part of the trace ids a replay of `corpus` sends (the same for every target)."""
    return {
        exchange_key(trace_id_for(trace_salt, exchange.id, "baseline", recorded=exchange.tags.get(TRACE_TAG, "")))
        for exchange in CorpusReader(corpus)
    }


def recording_fit(corpus: Path, recording: Path, *, trace_salt: str = "") -> tuple[int, int]:
    """(exchanges of the corpus the recording has calls for, exchanges in the corpus); a recording with none
    is refused: it was made for another corpus (or with another --trace-salt), so every call would be a guess."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CorpusTruncated)  # the mock itself warns about a damaged log once
            recorded = {exchange_key(call.trace_id) for call in UpstreamLogReader(recording) if call.trace_id}
    except CorpusError as exc:
        raise UserError(f"--mock-upstreams: {exc}") from None
    keys = corpus_exchange_keys(corpus, trace_salt=trace_salt)
    found = len(keys & recorded)
    if found == 0:
        raise UserError(
            f"--mock-upstreams {recording}: no call of any exchange of {corpus} (no trace id in common); give the "
            "upstream log a tap wrote while this corpus was recorded (record --inject-traceparent) or replayed, "
            "without --trace-salt"
        )
    return found, len(keys)


ATTACHMENTS = ("by trace id", "no trace id", "another corpus", "no answer")
"""How a recorded call joins the corpus: exactly by its exchange's trace id; not at all, for want of one (a
service that does not propagate `traceparent`: a mock matches it across the recording only); under a trace
id no exchange of the corpus has; or it has no answer to mock with (a failed call)."""


def upstream_attachment(corpus: Path, log: Path) -> dict[str, Counter[str]]:
    """Per dependency, how many recorded calls join the corpus, and how (`ATTACHMENTS`)."""
    keys = corpus_exchange_keys(corpus)
    attached: dict[str, Counter[str]] = defaultdict(Counter)
    for call in UpstreamLogReader(log):
        dependency = call.dependency.rpartition("/")[2]
        if call.answer is None:
            attached[dependency]["no answer"] += 1
        elif not call.trace_id:
            attached[dependency]["no trace id"] += 1
        else:
            attached[dependency]["by trace id" if exchange_key(call.trace_id) in keys else "another corpus"] += 1
    return dict(attached)


@contextmanager
def mocked_upstreams(recording: Path, routes: tuple[str, ...], *, on_miss: str) -> Iterator[tuple[Path, str]]:
    """Yields (the mock's log of the calls, its listening announcement) while the mock runs."""
    if not routes:
        raise UserError("--mock-upstreams needs --route NAME=@PORT for each dependency the targets call")
    with tempfile.TemporaryDirectory(prefix="replaydiff-mock-") as scratch:
        log = Path(scratch) / "upstream.jsonl.zst"
        arguments = [*(item for route in routes for item in ("--route", route)), "--mock", str(recording),
                     "--on-miss", on_miss, "-o", str(log), "--confdir", str(Path(scratch) / "mitmproxy")]  # fmt: skip
        tap = TapProcess(arguments)
        try:
            announced = tap.start()
        except TapProcessError as exc:
            raise UserError(f"the mock did not start: {exc}") from None
        try:
            yield log, announced
        finally:
            tap.stop()
