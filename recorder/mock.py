"""Answers a service's dependency calls from a recorded upstream log instead of the real dependency.

The recording is the tap's log of a recording run (each call with its request
and answer). It is indexed once by (exchange, dependency): the exchange is the
part of the trace id that every target's copy of a replayed exchange shares
(`corpora.trace`), so baseline, baseline#2 and candidate get the same recorded
answers, and a lookup costs the same whatever the recording's size. A call is
answered, in this order of preference, by:

- `exact`: the recorded call of the same ordinal in its exchange, when the
  request matches (method, path, query, body compared structurally);
- `exchange`: the best-matching recorded call of the same exchange (same method
  and path; then query, then body);
- `corpus`: the first recorded call anywhere with the same request (else same
  method, path and query; else same method and path);
- `miss`: nothing: the tap answers 502 or forwards, as the user chose.

A recorded call without a trace id (the service did not propagate
`traceparent` while it was recorded) is matched across the recording; given the
corpus it was recorded with, one that started while exactly one exchange was in
flight is attributed to that exchange by time (`corpora.windows`) and then
matched within it like a traced one, its matches flagged `mock_by_time`.

Volatile JSON fields are left out of the comparison with `[[rule]]` tables in
the syntax of the differ's rules file (`path = "$.requested_at"`, `ignore =
true`, optionally `endpoint = "POST /reservations"`); headers are never
compared.
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replaydiff.corpora import CorpusError, CorpusReader, CorpusTruncated, Response, UpstreamCall, UpstreamLogReader
from replaydiff.corpora.tomlfile import read_toml
from replaydiff.corpora.trace import EXCHANGE_DIGITS, exchange_key
from replaydiff.corpora.windows import ByTime, NoRecordingClock, recording_attribution

MISS_STATUS = 502
_CHANGES_SHOWN = 3


class MockError(Exception):
    """A recording or rules file the mock cannot use; the message names the file and what to do."""


@dataclass(frozen=True, slots=True)
class IgnoredField:
    """A JSON path (glob on `$.a[*].b` paths, and everything below it) left out of request matching."""

    path: str
    endpoint: str = "*"

    def covers(self, endpoint: str, location: str) -> bool:
        return fnmatch.fnmatchcase(endpoint, self.endpoint) and (
            location == self.path or location.startswith(self.path + ".") or location.startswith(self.path + "[")
        )


def load_ignored(path: Path) -> tuple[IgnoredField, ...]:
    """The `ignore = true` JSON-path rules of a rules file (the differ's syntax); the rest are the differ's business."""
    data = read_toml(path, MockError)
    rules = data.get("rule", [])
    if not isinstance(rules, list):
        raise MockError(f"{path}: 'rule' must be an array of tables ([[rule]])")
    ignored = []
    for number, rule in enumerate(rules, start=1):
        if not isinstance(rule, dict):
            raise MockError(f"{path}: [[rule]] #{number} must be a table")
        if rule.get("ignore") is True and isinstance(rule.get("path"), str):
            ignored.append(IgnoredField(path=rule["path"], endpoint=str(rule.get("endpoint", "*"))))
    return tuple(ignored)


@dataclass(frozen=True, slots=True)
class _Recorded:
    """One recorded call, kept small (a recording may hold millions): what matching and answering need. The
    strings are interned and the header lists shared, as most calls repeat them."""

    method: str
    path: str
    query: str
    shape: str
    """The request body as compared: canonical JSON without the ignored fields, else the text itself."""
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    """The answer's."""
    by_time: bool = False
    """Attributed to its exchange by time, not by trace id."""
    trailers: tuple[tuple[str, str], ...] = ()
    """The answer's trailers: a gRPC call's outcome (`grpc-status`) travels in them."""

    @property
    def answer(self) -> Response:
        return Response(status=self.status, headers=list(self.headers), body=self.body, trailers=list(self.trailers))


@dataclass(slots=True)
class _Exchange:
    owner: str
    """The target part of the trace id whose calls are kept: a recording made by a replay holds every target's
    copy of an exchange, and only one of them is the recorded sequence."""
    calls: list[_Recorded]


@dataclass(frozen=True, slots=True)
class MockMatch:
    how: str
    """`exact`, `exchange`, `corpus` or `miss`."""
    answer: Response | None
    recorded: int | None = None
    changes: list[str] = field(default_factory=list)
    by_time: bool = False
    """The recorded call that answered was attributed to the exchange by time."""


@dataclass(frozen=True, slots=True)
class CallRequest:
    """What the service sent, as the mock compares it."""

    dependency: str
    method: str
    path: str
    query: str
    body: bytes


class MockRecording:
    def __init__(self, ignored: tuple[IgnoredField, ...] = ()) -> None:
        self.ignored = ignored
        self._by_exchange: dict[str, _Exchange] = {}
        """By exchange key + dependency (the key has a fixed length, so the concatenation is unambiguous)."""
        self._headers: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}
        self._by_request: dict[tuple[str, str, str, str, str], _Recorded] = {}
        self._by_route: dict[tuple[str, str, str, str], _Recorded] = {}
        self._by_path: dict[tuple[str, str, str], _Recorded] = {}
        self.calls = 0

    @classmethod
    def load(cls, path: Path, *, ignored: tuple[IgnoredField, ...] = (), corpus: Path | None = None) -> MockRecording:
        """Streams the log once, twice with a `corpus` to attribute its untraced calls to by time; a damaged
        tail keeps every call before it (with a warning), as every reader does."""
        recording = cls(ignored)
        if corpus is not None:
            try:
                CorpusReader(corpus)  # its header, now: the corpus itself is read only if a call needs it
            except CorpusError as exc:
                raise MockError(f"--mock-corpus: {exc} (the corpus recorded along with the recording)") from None
        try:
            by_time = _attributed_by_time(path, corpus) if corpus is not None else {}
            for number, call in enumerate(_calls(path, warn=True)):
                recording.add(call, by_time=by_time.get(number, ""))
        except CorpusError as exc:
            raise MockError(f"{exc} (the recording to mock from; record it with `replaydiff tap -o`)") from None
        if recording.calls == 0:
            raise MockError(
                f"{path}: holds no call with its request and answer; record one with `replaydiff tap -o FILE` "
                "in front of the real dependency"
            )
        return recording

    def add(self, call: UpstreamCall, *, by_time: str = "") -> None:
        """`by_time`: the exchange key a call without a trace id was attributed to by time; without either,
        the call only answers across the recording."""
        if call.answer is None or call.request is None:
            return
        dependency = sys.intern(dependency_name(call.dependency))
        headers = tuple((sys.intern(k), sys.intern(v)) for k, v in call.answer.headers if k.lower() not in _HOP_BY_HOP)
        trailers = tuple((sys.intern(k), sys.intern(v)) for k, v in call.answer.trailers)
        recorded = _Recorded(
            sys.intern(call.method), sys.intern(call.path), sys.intern(call.query),
            sys.intern(self._shape(call.method, call.path, call.request.body)),
            call.answer.status, self._headers.setdefault(headers, headers), call.answer.body, bool(by_time),
            self._headers.setdefault(trailers, trailers),
        )  # fmt: skip
        if call.trace_id:
            owner = sys.intern(call.trace_id[EXCHANGE_DIGITS:])
            exchange = self._by_exchange.setdefault(exchange_key(call.trace_id) + dependency, _Exchange(owner, []))
            exchange.owner = exchange.owner or owner  # begun by calls attributed by time, which have no target
            if exchange.owner == owner:
                exchange.calls.append(recorded)
        elif by_time:
            self._by_exchange.setdefault(by_time + dependency, _Exchange("", [])).calls.append(recorded)
        self._by_request.setdefault((dependency, call.method, call.path, call.query, recorded.shape), recorded)
        self._by_route.setdefault((dependency, call.method, call.path, call.query), recorded)
        self._by_path.setdefault((dependency, call.method, call.path), recorded)
        self.calls += 1

    @property
    def dependencies(self) -> set[str]:
        return {dependency for dependency, *_ in self._by_path}

    @property
    def exchange_keys(self) -> set[str]:
        return {key[:EXCHANGE_DIGITS] for key in self._by_exchange}

    def answer(self, trace_id: str, ordinal: int, request: CallRequest) -> MockMatch:
        shape = self._shape(request.method, request.path, request.body)
        exchange = self._by_exchange.get(exchange_key(trace_id) + request.dependency) if trace_id else None
        calls = exchange.calls if exchange is not None else []
        if ordinal < len(calls) and _same(calls[ordinal], request, shape):
            return MockMatch("exact", calls[ordinal].answer, ordinal, by_time=calls[ordinal].by_time)
        best = _best_in_exchange(calls, request, shape, ordinal)
        if best is not None:
            changes = self._changes(calls[best], request, shape)
            return MockMatch("exchange", calls[best].answer, best, changes, by_time=calls[best].by_time)
        for found in (
            self._by_request.get((request.dependency, request.method, request.path, request.query, shape)),
            self._by_route.get((request.dependency, request.method, request.path, request.query)),
            self._by_path.get((request.dependency, request.method, request.path)),
        ):
            if found is not None:
                return MockMatch("corpus", found.answer, None, self._changes(found, request, shape))
        return MockMatch("miss", None)

    def _shape(self, method: str, path: str, body: bytes) -> str:
        try:
            document = json.loads(body) if body else None
        except (ValueError, RecursionError):
            return body.decode("utf-8", "replace")
        if document is None:
            return ""
        endpoint = f"{method} {path}"
        ignored = [rule for rule in self.ignored if fnmatch.fnmatchcase(endpoint, rule.endpoint)]
        if ignored:
            document = _without(document, "$", ignored, endpoint)
        return json.dumps(document, sort_keys=True, separators=(",", ":"))

    def _changes(self, recorded: _Recorded, request: CallRequest, shape: str) -> list[str]:
        """What differs from the recorded request, briefly: the finding's example, not a full diff."""
        changes = []
        if request.query != recorded.query:
            changes.append(f"query {recorded.query or '(none)'} → {request.query or '(none)'}")
        if shape != recorded.shape:
            changes.extend(_body_changes(recorded.shape, shape))
        return changes[:_CHANGES_SHOWN]


def _calls(path: Path, *, warn: bool) -> Iterator[UpstreamCall]:
    with warnings.catch_warnings():
        # a damaged tail: warned once (on the pass that loads), the calls before it kept
        warnings.simplefilter("always" if warn else "ignore", CorpusTruncated)
        yield from UpstreamLogReader(path)


def _attributed_by_time(path: Path, corpus: Path) -> dict[int, str]:
    """The exchange key of each answered call without a trace id that started while exactly one exchange of
    `corpus` was in flight, by the call's position in the log. The corpus is read only if there are such calls."""
    untraced = [
        (call.start_us, number)
        for number, call in enumerate(_calls(path, warn=False))
        if not call.trace_id and call.answer is not None and call.request is not None
    ]
    if not untraced:
        return {}
    try:
        attributed = {
            number: attribution.exchange_key
            for number, attribution in recording_attribution(corpus, untraced)
            if attribution.how is ByTime.ATTRIBUTED
        }
    except NoRecordingClock:
        # a warning, not an error: `run --mock-upstreams` passes its corpus whatever its age, and the calls
        # still answer across the recording
        warnings.warn(
            f"mock: {corpus} does not say when it was recorded (no epoch_unix_us: an older recorder, or a rewritten "
            f"corpus), so the recording's {len(untraced)} calls without a trace id are matched across it only",
            stacklevel=2,
        )
        return {}
    except CorpusError as exc:
        raise MockError(f"--mock-corpus: {exc} (the corpus recorded along with the recording)") from None
    if not attributed:
        warnings.warn(
            f"mock: none of the recording's {len(untraced)} calls without a trace id started while exactly one "
            f"exchange of {corpus} was in flight; were they recorded together?",
            stacklevel=2,
        )
    return attributed


def dependency_name(dependency: str) -> str:
    """`candidate/inventory` → `inventory`: a target prefix only tells the tap's listeners apart."""
    return dependency.rpartition("/")[2]


_HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive"})
"""Left out of recorded answers: the tap recomputes them (bodies are stored decoded, so length and encoding
change)."""


def _same(recorded: _Recorded, request: CallRequest, shape: str) -> bool:
    return (recorded.method, recorded.path, recorded.query, recorded.shape) == (
        request.method, request.path, request.query, shape,
    )  # fmt: skip


def _best_in_exchange(calls: list[_Recorded], request: CallRequest, shape: str, ordinal: int) -> int | None:
    """Same method and path required; then the query, then the body; ties go to the ordinal nearest the call's."""
    best: tuple[int, int] | None = None
    chosen = None
    for index, call in enumerate(calls):
        if (call.method, call.path) != (request.method, request.path):
            continue
        score = (2 if call.query == request.query else 0) + (1 if call.shape == shape else 0)
        rank = (-score, abs(index - ordinal))
        if best is None or rank < best:
            best, chosen = rank, index
    return chosen


def _without(document: Any, location: str, ignored: list[IgnoredField], endpoint: str) -> Any:
    if isinstance(document, dict):
        return {
            key: _without(value, f"{location}.{key}", ignored, endpoint)
            for key, value in document.items()
            if not any(rule.covers(endpoint, _generic(f"{location}.{key}")) for rule in ignored)
        }
    if isinstance(document, list):
        return [_without(value, f"{location}[{index}]", ignored, endpoint) for index, value in enumerate(document)]
    return document


_INDEX = re.compile(r"\[\d+\]")


def _generic(location: str) -> str:
    """`$.items[3].qty` → `$.items[*].qty`: how rules name list members."""
    return _INDEX.sub("[*]", location)


def _body_changes(recorded: str, sent: str) -> list[str]:
    try:
        before, after = json.loads(recorded) if recorded else None, json.loads(sent) if sent else None
    except ValueError:
        return ["body differs"]
    left, right = dict(_leaves(before, "$")), dict(_leaves(after, "$"))
    changes = []
    for location in sorted(left.keys() | right.keys()):
        if left.get(location, _ABSENT) != right.get(location, _ABSENT):
            changes.append(f"body {location}: {_shown(left.get(location, _ABSENT))} → {_shown(right.get(location, _ABSENT))}")
    return changes or ["body differs"]


_ABSENT = object()


def _shown(value: Any) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value)[:60]


def _leaves(document: Any, location: str) -> Iterator[tuple[str, Any]]:
    if isinstance(document, dict) and document:
        for key, value in document.items():
            yield from _leaves(value, f"{location}.{key}")
    elif isinstance(document, list) and document:
        for index, value in enumerate(document):
            yield from _leaves(value, f"{location}[{index}]")
    else:
        yield location, document
