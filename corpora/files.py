"""Typed files over the container: corpora of exchanges and results of replays."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from replaydiff.corpora.container import FLUSH_INTERVAL_S, ContainerReader, ContainerWriter
from replaydiff.corpora.errors import MalformedRecord
from replaydiff.corpora.model import Exchange, ReplayRecord, UpstreamCall
from replaydiff.corpora.validation import EXCHANGE, REPLAY_RECORD, UPSTREAM_CALL, conforms, problem

CORPUS_FORMAT = "replaydiff-corpus/1"
RESULTS_FORMAT = "replaydiff-results/1"
UPSTREAM_FORMAT = "replaydiff-upstream/1"


class _Serializable(Protocol):
    def to_json(self) -> dict[str, Any]: ...


RecordT = TypeVar("RecordT", bound=_Serializable)


class _TypedWriter(Generic[RecordT]):
    format: str

    def __init__(
        self, path: Path | str, *, flush_interval: float = FLUSH_INTERVAL_S, background: bool = False, **header: Any
    ) -> None:
        """`background`: compress and write in a thread of the writer's own (see `ContainerWriter`)."""
        self._container = ContainerWriter(
            path, {"format": self.format, **header}, flush_interval=flush_interval, background=background
        )

    @property
    def path(self) -> Path:
        return self._container.path

    @property
    def count(self) -> int:
        return self._container.count

    def write(self, record: RecordT) -> None:
        self._container.write(record.to_json())

    def flush_if_due(self) -> None:
        self._container.flush_if_due()

    def mark_flushed(self) -> bool:
        return self._container.mark_flushed()

    def copy_from(self, reader: _TypedReader[RecordT]) -> int:
        """Appends every complete record of `reader`'s file as stored; returns how many."""
        copied = 0
        for line in reader.raw_records():
            self._container.write_raw(line)
            copied += 1
        return copied

    def close(self, **summary: Any) -> None:
        self._container.close(**summary)

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_W = TypeVar("_W", bound=_TypedWriter[Any])


class _TypedReader(Generic[RecordT]):
    format: str
    _decode: Callable[[dict[str, Any]], RecordT]
    _shape: dict[str, Any]

    def __init__(self, path: Path | str) -> None:
        self._container = ContainerReader(path, expected_format=self.format)

    @property
    def path(self) -> Path:
        return self._container.path

    @property
    def header(self) -> dict[str, Any]:
        return self._container.header

    @property
    def complete(self) -> bool:
        """True once iteration reached the end marker of a cleanly closed file."""
        return self._container.complete

    @property
    def end(self) -> dict[str, Any]:
        """The summary its writer left on close (counts, sanitizer rules fired); empty if not closed cleanly."""
        return self._container.end

    def count(self) -> int:
        return self._container.count()

    def raw_records(self) -> Iterator[bytes]:
        return self._container.raw_records()

    def closed_cleanly(self) -> bool:
        return self._container.closed_cleanly()

    def __iter__(self) -> Iterator[RecordT]:
        decode = type(self)._decode
        shape = type(self)._shape
        fits = conforms(shape)
        for number, data in self._container.numbered():
            if not fits(data) and (found := problem(data, shape)):
                raise MalformedRecord(self.path, number, *found)
            try:
                record = decode(data)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # a header pair of the wrong shape (named by the full check), or what the table cannot see,
                # e.g. a body's b64 that is not base64, or an unknown field
                found = problem(data, shape) or ("", f"cannot be read: {exc}")
                raise MalformedRecord(self.path, number, *found) from exc
            yield record


class CorpusWriter(_TypedWriter[Exchange]):
    """Header fields: `source` (how it was captured) and `sanitizer` (policy digest, rule counts)."""

    format = CORPUS_FORMAT


class CorpusReader(_TypedReader[Exchange]):
    format = CORPUS_FORMAT
    _decode = Exchange.from_json
    _shape = EXCHANGE


class ResultsWriter(_TypedWriter[ReplayRecord]):
    """Header fields: `corpus`, `targets` (name → URL), `mode`."""

    format = RESULTS_FORMAT


class ResultsReader(_TypedReader[ReplayRecord]):
    format = RESULTS_FORMAT
    _decode = ReplayRecord.from_json
    _shape = REPLAY_RECORD


class UpstreamLogWriter(_TypedWriter[UpstreamCall]):
    """The tap's log of the calls services made to their dependencies. Header: `routes`, `faults`."""

    format = UPSTREAM_FORMAT


class UpstreamLogReader(_TypedReader[UpstreamCall]):
    format = UPSTREAM_FORMAT
    _decode = UpstreamCall.from_json
    _shape = UPSTREAM_CALL
