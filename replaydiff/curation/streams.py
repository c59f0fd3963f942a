"""Reading and writing corpora for curation: the session of an exchange, raw copies, curated headers."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from replaydiff.corpora import CORPUS_FORMAT, CorpusError, CorpusReader, CorpusTruncated, Exchange
from replaydiff.corpora.container import ContainerReader, ContainerWriter
from replaydiff.errors import UserError


def session_of(exchange: Exchange) -> str:
    """An exchange recorded without a session key is a session of its own: no flow to keep together is known."""
    return exchange.session or f"~{exchange.id}"


def exchanges(path: Path) -> Iterator[Exchange]:
    """Every exchange, warning (once, at the end) how many had no session key; an empty corpus is an error."""
    reader = CorpusReader(path)
    count = without_session = 0
    for exchange in reader:
        count += 1
        without_session += not exchange.session
        yield exchange
    if not count:
        raise UserError(f"{path}: the corpus holds no exchange; record or import some traffic first")
    if without_session:
        warnings.warn(
            f"{path}: {without_session} of {count} exchanges have no session key; each is treated as a session of "
            "its own, so requests that depend on each other may be kept apart",
            stacklevel=2,
        )


def records(path: Path, *, quiet: bool = False) -> Iterator[dict[str, Any]]:
    """Each exchange as its stored JSON record: copying needs no decoding of bodies.

    `quiet`: no second warning about a damaged tail, for a job's second pass over the same file.
    """
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore", CorpusTruncated)
        yield from ContainerReader(path, expected_format=CORPUS_FORMAT)


def record_session(record: dict[str, Any]) -> str:
    """`session_of` for a raw record."""
    return str(record.get("session") or f"~{record['id']}")


class CuratedWriter:
    """A corpus file whose header says where it came from and what curation did, so reports can show it."""

    def __init__(self, path: Path, *, sources: list[Path], curation: dict[str, Any]) -> None:
        header_source = _source_of(sources[0]) if len(sources) == 1 else "merged corpora"
        self.path = path
        self._container = ContainerWriter(
            path,
            {"format": CORPUS_FORMAT, "source": header_source,
             "curation": {"from": [str(s) for s in sources], **curation}},
        )  # fmt: skip

    @property
    def count(self) -> int:
        return self._container.count

    def write(self, record: dict[str, Any]) -> None:
        self._container.write(record)

    def close(self, **summary: Any) -> None:
        self._container.close(**summary)

    def __enter__(self) -> CuratedWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _source_of(path: Path) -> str:
    try:
        return str(CorpusReader(path).header.get("source", path))
    except CorpusError:  # read successfully moments ago; the header's source is only decoration
        return str(path)


def check_output(output: Path, *inputs: Path) -> None:
    """Writing over an input would destroy it while it is read."""
    for source in inputs:
        if output.exists() and source.exists() and output.resolve() == source.resolve():
            raise UserError(f"{output}: the output would overwrite the input corpus; choose another -o")
