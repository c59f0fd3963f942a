"""The on-disk container: JSON Lines in independent zstd frames.

Why independent frames: a recorder killed with SIGKILL leaves every frame it
completed readable, so it loses at most the last flush interval; and the file
stays readable by standard tools (`zstd -dc FILE | jq`). Line 1 is a header
naming the format; a clean close appends an `{"end": ...}` line, so a reader
can tell a complete file from one whose writer died.
"""

from __future__ import annotations

import io
import os
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import zstandard

from replaydiff.corpora.errors import (
    CorpusError,
    CorpusNotFound,
    CorpusTruncated,
    NoCompleteRecord,
    NotACorpus,
    UnsupportedFormat,
)

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
FLUSH_INTERVAL_S = 1.0
_READ_CHUNK = 1 << 16
_END_PREFIX = b'{"end":'


WRITER_NICENESS = 19


def _yield_the_cpu() -> None:
    """Run the background writer at the lowest priority (Linux: niceness is per thread).

    Its compression and fsync run beside the event loop that produced the records; at equal priority, when every
    core is busy (a replay, its targets, this thread), the loop's wake-up can wait a whole scheduler slice behind
    it, which is a request sent milliseconds late. At niceness 19 its weight is 1/70 of the loop's, so the loop
    preempts it on waking; the frame still reaches disk within its second when the loop is idle in between."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not allowed: the writer keeps the loop's priority
        pass


class ContainerWriter:
    """Appends JSON records, compressing a frame at least every `flush_interval` seconds and on close.

    Not thread-safe: one writer belongs to one event loop or thread. With
    `background=True` a thread of its own compresses, writes and fsyncs each
    frame (zstd and file I/O release the GIL), so an event loop that writes
    records is not stalled for milliseconds once a second; a write error then
    surfaces at the next flush or at close.
    """

    def __init__(
        self,
        path: Path | str,
        header: dict[str, Any],
        *,
        flush_interval: float = FLUSH_INTERVAL_S,
        background: bool = False,
    ) -> None:
        self.path = Path(path)
        self.flush_interval = flush_interval
        self.count = 0
        self._pending = bytearray()
        """Lines not yet compressed, copied into one buffer: orjson's bytes keep a 4 KiB allocation whatever
        their length, so a second of replay records kept as separate lines took seven times their size."""
        self._compressor = zstandard.ZstdCompressor(level=3, write_checksum=True)
        """Level 3 (zstd's default): a quarter of level 6's time for about 4% more bytes."""
        self._worker = (
            ThreadPoolExecutor(1, thread_name_prefix="replaydiff-writer", initializer=_yield_the_cpu)
            if background
            else None
        )
        self._in_flight: Future[None] | None = None
        try:
            self._file: BinaryIO | None = open(self.path, "wb")
        except OSError as exc:
            raise CorpusError(path, f"cannot write: {exc.strerror}") from exc
        self._last_flush = time.monotonic()
        header = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **header}
        self._pending += _line(header)
        self.flush()

    def write(self, record: dict[str, Any]) -> None:
        self._append(_line(record))

    def write_raw(self, line: bytes) -> None:
        """A record line exactly as another container holds it (see `ContainerReader.raw_records`)."""
        self._append(line + b"\n")

    def _append(self, line: bytes) -> None:
        if self._file is None:
            raise CorpusError(self.path, "write after close")
        self._pending += line
        self.count += 1
        self.flush_if_due()

    def flush_if_due(self) -> None:
        """Called on every write and by a periodic timer, so quiet periods still reach disk."""
        if self._pending and time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        if self._file is None or not self._pending:
            return
        if self._worker is None:
            self._write_frame(self._pending)
            self._pending.clear()
        else:
            self._check_in_flight()
            self._in_flight = self._worker.submit(self._write_frame, self._pending)
            self._pending = bytearray()
        self._last_flush = time.monotonic()

    def mark_flushed(self) -> bool:
        """When every record written so far is on disk, sets the file's modification time to now and returns
        True: a reader of the live file (a replay attaching a tap's calls) waits for a time after its own end
        rather than guessing how long a busy writer takes to flush."""
        if self._file is None or self._pending or (self._in_flight is not None and not self._in_flight.done()):
            return False
        os.utime(self.path)
        return True

    def _write_frame(self, data: bytes | bytearray) -> None:
        assert self._file is not None
        self._file.write(self._compressor.compress(data))
        self._file.flush()
        os.fsync(self._file.fileno())

    def _check_in_flight(self) -> None:
        """The previous background frame's error, raised here, in the writing thread."""
        if self._in_flight is not None and self._in_flight.done():
            self._in_flight.result()

    def close(self, **summary: Any) -> None:
        if self._file is None:
            return
        self._pending += _line({"end": {"records": self.count, **summary}})
        try:
            self.flush()
            if self._worker is not None:
                self._worker.shutdown(wait=True)
                self._check_in_flight()
        finally:
            self._file.close()
            self._file = None

    @property
    def closed(self) -> bool:
        return self._file is None

    def __enter__(self) -> ContainerWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _line(record: dict[str, Any]) -> bytes:
    """orjson writes the same compact UTF-8 JSON as `json.dumps(ensure_ascii=False, separators=(",", ":"))`,
    several times faster: every recorded exchange and every replay result passes through here."""
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


class ContainerReader:
    """Streams records frame by frame, in memory bounded by one frame.

    A record counts only when the frame holding it decoded whole (its zstd
    checksum verified) and its line is complete: damage of any kind, anywhere
    (a cut, appended bytes, flipped bits), stops iteration with a
    `CorpusTruncated` warning after every complete record before it. A file
    whose damage leaves no complete record at all is refused when opened
    (`NoCompleteRecord`), so a command fails before it does anything with it.
    After iteration, `complete` tells whether the writer closed the file cleanly.
    """

    def __init__(self, path: Path | str, *, expected_format: str) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise CorpusNotFound(path)
        if self.path.is_dir():
            raise NotACorpus(path, "is a directory, not a replaydiff file")
        with open(self.path, "rb") as probe:
            magic = probe.read(4)
        if magic != ZSTD_MAGIC:
            raise NotACorpus(path, "not a zstd-compressed replaydiff file")
        self.complete = False
        self.end: dict[str, Any] = {}
        self._damage: str | None = None
        self.header = self._read_header(expected_format)
        self._refuse_if_no_complete_record()

    def _read_header(self, expected_format: str) -> dict[str, Any]:
        for raw in self._raw_lines():
            try:
                header = orjson.loads(raw)
            except ValueError:
                break
            fmt = header.get("format") if isinstance(header, dict) else None
            if fmt == expected_format:
                return header
            if isinstance(fmt, str) and fmt.startswith("replaydiff-"):
                raise UnsupportedFormat(self.path, f"is a {fmt} file, expected {expected_format}")
            break
        raise NotACorpus(self.path, f"has no {expected_format} header")

    def _refuse_if_no_complete_record(self) -> None:
        """Reads no further than the first record. A file that is only a header, cleanly closed or still being
        written (a live tap log), is empty, not damaged; one whose damage took every record is unusable."""
        lines = self._raw_lines()
        next(lines, None)
        first = next(lines, None)
        lines.close()
        if first is None and self._damage is not None:
            raise NoCompleteRecord(
                self.path, f"{self._damage} and no complete record before it: nothing to use; copy or record it again"
            )

    def _frames(self) -> Iterator[bytes]:
        """The decompressed content of each complete frame, in order, until the first damage.

        Frame by frame on purpose: zstd's streaming reader raises on damage with the good frames' last chunk
        still in its buffer, which lost up to a hundred records that `zstd -dc` recovers."""
        self._damage = None
        offset = 0
        with open(self.path, "rb") as handle:
            decoder = zstandard.ZstdDecompressor().decompressobj()
            content = bytearray()
            pending = 0  # compressed bytes fed to `decoder` for the frame in progress
            chunk = handle.read(_READ_CHUNK)
            while chunk:
                try:
                    content += decoder.decompress(chunk)
                except zstandard.ZstdError:
                    self._damage = f"corrupt data in the frame at byte {offset}"
                    return
                if not decoder.eof:
                    pending += len(chunk)
                    chunk = handle.read(_READ_CHUNK)
                    continue
                rest = decoder.unused_data
                offset += pending + len(chunk) - len(rest)
                pending = 0
                yield bytes(content)
                content = bytearray()
                decoder = zstandard.ZstdDecompressor().decompressobj()
                chunk = rest or handle.read(_READ_CHUNK)
            if pending:
                self._damage = f"an incomplete frame at byte {offset}"

    def _raw_lines(self) -> Iterator[bytes]:
        """Complete lines of complete frames only."""
        for content in self._frames():
            *lines, partial = content.split(b"\n")
            yield from lines
            if partial:
                self._damage = "an incomplete last record"
                return

    def raw_records(self) -> Iterator[bytes]:
        """Each record's JSON line, unparsed, header and end marker left out: for copying records between
        files (e.g. merging the parts of a replay spread over processes) without decoding and re-encoding."""
        lines = self._raw_lines()
        next(lines, None)
        for raw in lines:
            if raw.startswith(_END_PREFIX):
                return
            yield raw

    def closed_cleanly(self) -> bool:
        """Its writer closed it (the last complete line is the end marker), read without parsing the records: a
        live file's reader tells a finished one from one still being written."""
        return self._lines_and_end()[1]

    def count(self) -> int:
        """Records in the file, counted without parsing them: cheap enough to size a progress bar."""
        lines, ended = self._lines_and_end()
        return max(0, lines - 1 - ended)

    def _lines_and_end(self) -> tuple[int, bool]:
        """Complete lines (the header included), and whether the last of them is the end marker."""
        lines = 0
        last = b""
        for raw in self._raw_lines():
            lines += 1
            last = raw
        return lines, last.startswith(_END_PREFIX)

    def numbered(self) -> Iterator[tuple[int, Any]]:
        """(line number, parsed JSON) of each record; the header is line 1. Stops at the end marker or the
        first damage; warns, naming what and where, when the file did not end cleanly."""
        lines = self._raw_lines()
        next(lines, None)  # header, already parsed
        kept = 0
        for number, raw in enumerate(lines, start=2):
            try:
                record = orjson.loads(raw)
            except ValueError:
                self._damage = f"an undecodable record on line {number}"
                break
            if isinstance(record, dict) and "end" in record:
                self.complete = True
                self.end = record["end"] if isinstance(record["end"], dict) else {}
                return
            kept += 1
            yield number, record
        what = self._damage or "no end marker (its writer was killed or is still writing)"
        warnings.warn(
            CorpusTruncated(f"{self.path}: {what}; kept the {kept} complete records before it"),
            stacklevel=3,
        )

    def __iter__(self) -> Iterator[Any]:
        for _, record in self.numbered():
            yield record


def decompressed_bytes(path: Path | str) -> bytes:
    """The whole decompressed content: for tests and tools that grep raw bytes."""
    with open(path, "rb") as handle:
        reader = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True)
        return io.BufferedReader(reader).read()
