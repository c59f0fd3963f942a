"""Precise corpus errors, so callers catch exactly what they mean.

Every message is one line a user can act on: what was wrong, with which file.
"""

from __future__ import annotations

from pathlib import Path


class CorpusError(Exception):
    """Base for everything that can go wrong reading or writing a corpus or results file."""

    def __init__(self, path: Path | str, message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: {message}")


class CorpusNotFound(CorpusError):
    def __init__(self, path: Path | str) -> None:
        super().__init__(path, "no such file")


class NotACorpus(CorpusError):
    """The file exists but is not a replaydiff container (wrong compression, header or format)."""


class UnsupportedFormat(NotACorpus):
    """A replaydiff container of a format version or kind this reader does not understand."""


class CorpusTruncated(UserWarning):
    """A corpus ended in an incomplete or corrupt frame; every complete record before it was kept."""


class NoCompleteRecord(NotACorpus):
    """The file's damage left no complete record: nothing in it can be used, so it is an input error."""


class MalformedRecord(NotACorpus):
    """A complete record of the wrong shape: a field missing, of the wrong type, or the record not an object."""

    def __init__(self, path: Path | str, line: int, field: str, problem: str) -> None:
        self.line = line
        self.field = field
        where = f"field {field}" if field else "the record"
        super().__init__(path, f"line {line}: {where} {problem}")
