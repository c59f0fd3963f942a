"""The corruption suite: damaged corpora and results files keep exactly their complete records, and never a traceback.

The files are built here frame by frame with zstandard itself, so the test knows where every frame ends without
trusting the writer or reader under test; then hypothesis cuts, extends or overwrites them at random points.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replaydiff.corpora import (
    CORPUS_FORMAT,
    RESULTS_FORMAT,
    Attempt,
    CorpusReader,
    CorpusTruncated,
    MalformedRecord,
    NoCompleteRecord,
    NotACorpus,
    ReplayRecord,
    Response,
    ResultsReader,
)
from tests.servers import serve, stock_app
from tests.strategies import exchanges

BIN = Path(sys.executable).parent


@dataclass
class Built:
    data: bytes
    records: list[dict]
    frame_ends: list[int]
    """Byte offset where each frame ends; frame 0 is the header's."""
    frame_records: list[int]
    """How many records (not header, not end marker) are complete once each frame is."""


def build(header: dict, records: list[dict], frame_sizes: list[int]) -> Built:
    """Header in a frame of its own (as the writer does), then records in frames of the given sizes, the end
    marker in the last frame."""
    compressor = zstandard.ZstdCompressor(level=3, write_checksum=True)
    data = bytearray(compressor.compress(orjson.dumps(header) + b"\n"))
    ends, counts, done = [len(data)], [0], 0
    for size in frame_sizes:
        chunk = records[done : done + size]
        done += len(chunk)
        lines = b"".join(orjson.dumps(record) + b"\n" for record in chunk)
        if done == len(records):
            lines += orjson.dumps({"end": {"records": len(records)}}) + b"\n"
        data += compressor.compress(lines)
        ends.append(len(data))
        counts.append(done)
        if done == len(records):
            break
    return Built(bytes(data), records, ends, counts)


def complete_before(built: Built, offset: int) -> int:
    """Records in the frames that end at or before `offset`."""
    return max((count for end, count in zip(built.frame_ends, built.frame_records) if end <= offset), default=0)


def read(reader_type: type, path: Path) -> list[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorpusTruncated)
        return [record.to_json() for record in reader_type(path)]


def _results(count: int) -> list[dict]:
    return [
        ReplayRecord(
            exchange_id=str(i),
            target="baseline",
            endpoint="GET /x",
            attempts=[Attempt(sent_us=i, ttfb_us=1, duration_us=2, status=200)],
            response=Response(200, body=b"r" * (i % 50)),
        ).to_json()
        for i in range(count)
    ]


kinds = st.sampled_from([(CORPUS_FORMAT, CorpusReader), (RESULTS_FORMAT, ResultsReader)])
frame_sizes = st.lists(st.integers(1, 4), min_size=1, max_size=8)


@st.composite
def files(draw: st.DrawFn) -> tuple[Built, type]:
    fmt, reader_type = draw(kinds)
    count = draw(st.integers(1, 12))
    if reader_type is CorpusReader:
        records = [e.to_json() for e in draw(st.lists(exchanges, min_size=count, max_size=count))]
    else:
        records = _results(count)
    sizes = draw(frame_sizes) + [count]  # whatever is left goes in one last frame
    return build({"format": fmt}, records, sizes), reader_type


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(built_and_type=files(), cut=st.floats(0, 1))
def test_a_cut_file_keeps_exactly_the_records_of_its_whole_frames(tmp_path: Path, built_and_type, cut: float) -> None:
    built, reader_type = built_and_type
    offset = int(len(built.data) * cut)
    path = tmp_path / "f.jsonl.zst"
    path.write_bytes(built.data[:offset])
    if offset < built.frame_ends[0]:
        with pytest.raises(NotACorpus):
            reader_type(path)
        return
    expected = complete_before(built, offset)
    damaged = offset not in built.frame_ends
    if expected == 0 and damaged:
        with pytest.raises(NoCompleteRecord):
            reader_type(path)
        return
    assert read(reader_type, path) == built.records[:expected]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(built_and_type=files(), tail=st.binary(min_size=1, max_size=5000))
def test_bytes_appended_to_a_file_lose_no_record(tmp_path: Path, built_and_type, tail: bytes) -> None:
    built, reader_type = built_and_type
    path = tmp_path / "f.jsonl.zst"
    path.write_bytes(built.data + tail)
    assert read(reader_type, path) == built.records


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(built_and_type=files(), where=st.floats(0, 1), garbage=st.binary(min_size=1, max_size=64))
def test_overwritten_bytes_keep_every_whole_frame_before_them(
    tmp_path: Path, built_and_type, where: float, garbage: bytes
) -> None:
    built, reader_type = built_and_type
    offset = min(int(len(built.data) * where), len(built.data) - 1)
    damaged = bytearray(built.data)
    damaged[offset : offset + len(garbage)] = garbage
    path = tmp_path / "f.jsonl.zst"
    path.write_bytes(bytes(damaged))
    try:
        kept = read(reader_type, path)
    except (NotACorpus, NoCompleteRecord, MalformedRecord):
        # header frame hit, nothing whole left, or a flipped byte that still decodes (only possible in
        # a frame without checksum, i.e. when the frame header itself was hit) into a record of the wrong shape
        assert complete_before(built, offset) == 0 or offset < built.frame_ends[0] or _hits_frame_header(built, offset)
        return
    before = complete_before(built, offset)
    assert kept == built.records[: len(kept)] or _hits_frame_header(built, offset)
    assert len(kept) >= before


def _hits_frame_header(built: Built, offset: int) -> bool:
    """Within the first bytes of a frame, where a changed descriptor can turn the checksum off."""
    return any(0 <= offset - start < 18 for start in [0, *built.frame_ends])


def _corpus(tmp_path: Path) -> Built:
    from replaydiff.corpora import Exchange, Request

    records = [
        Exchange(
            id=str(i), session="s", start_us=i * 1000, request=Request("GET", "http", "h", 80, f"/items/{i}"),
            response=Response(200, body=b'{"ok": true}'),
        ).to_json()
        for i in range(200)
    ]
    return build({"format": CORPUS_FORMAT, "source": "test"}, records, [40] * 5)


@pytest.mark.parametrize("appended", [7, 10, 5000])
def test_inspect_counts_every_record_of_a_corpus_with_bytes_appended(tmp_path: Path, appended: int) -> None:
    path = tmp_path / "c.jsonl.zst"
    path.write_bytes(_corpus(tmp_path).data + bytes(range(256)) * (appended // 256) + b"\xff" * (appended % 256))
    done = subprocess.run([BIN / "replaydiff", "inspect", "--json", path], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["exchanges"] == 200


def test_a_corpus_cut_inside_its_only_records_frame_is_an_input_error(tmp_path: Path) -> None:
    built = build({"format": CORPUS_FORMAT}, _corpus(tmp_path).records, [200])
    path = tmp_path / "c.jsonl.zst"
    path.write_bytes(built.data[: (built.frame_ends[0] + built.frame_ends[1]) // 2])
    done = subprocess.run(
        [BIN / "replaydiff", "replay", path, "--baseline", "http://127.0.0.1:9", "--candidate", "http://127.0.0.1:9",
         "-o", tmp_path / "r.jsonl.zst"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"replaydiff: error: {path}: an incomplete frame at byte ")
    assert "no complete record" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r.jsonl.zst").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r["request"].__setitem__("path", 42), "line 3: field request.path is a number (42), expected text"),
        (lambda r: ["a", "list"], "line 3: the record is a list, expected an object"),
        (lambda r: r.pop("request"), "line 3: field request is missing"),
        (lambda r: r["request"]["headers"].append(["x-a"]), "field request.headers[0] is a list, expected a [name, va"),
        (lambda r: r["response"].__setitem__("status", "200"), "field response.status is text, expected a whole number"),
    ],
)
@pytest.mark.parametrize("command", ["inspect", "replay"])
def test_a_record_of_the_wrong_shape_is_one_line_naming_file_line_and_field(
    tmp_path: Path, change, message: str, command: str
) -> None:
    records = _corpus(tmp_path).records[:3]
    replaced = change(records[1])
    if replaced is not None and not isinstance(replaced, (dict, str)):
        records[1] = replaced
    path = tmp_path / "c.jsonl.zst"
    path.write_bytes(build({"format": CORPUS_FORMAT}, records, [3]).data)
    with serve(stock_app()) as url:
        args = [BIN / "replaydiff", command, path]
        if command == "replay":
            args += ["--baseline", url, "--candidate", url, "--speed", "100", "-o", tmp_path / "r.zst"]
        done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    (error,) = [line for line in done.stderr.splitlines() if line.startswith("replaydiff: error: ")]
    assert error.startswith(f"replaydiff: error: {path}: ") and message in error, done.stderr


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.05, 1), garbage=st.binary(max_size=300))
def test_diff_of_a_damaged_results_file_never_shows_a_traceback(tmp_path: Path, cut: float, garbage: bytes) -> None:
    records = []
    for i in range(30):
        for target in ("baseline", "baseline2", "candidate"):
            body = b'{"price": %d}' % (i if target != "candidate" else i + 1)
            records.append(
                ReplayRecord(
                    str(i), target, "GET /x", [Attempt(sent_us=i, ttfb_us=1, duration_us=2, status=200)],
                    Response(200, body=body),
                ).to_json()
            )  # fmt: skip
    built = build({"format": RESULTS_FORMAT, "targets": {}}, records, [9] * 10)
    path = tmp_path / "r.jsonl.zst"
    offset = int(len(built.data) * cut)
    path.write_bytes(built.data[:offset] + garbage)
    done = subprocess.run([BIN / "replaydiff", "diff", path], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr
    damaged = offset not in built.frame_ends or bool(garbage)
    if complete_before(built, offset) == 0 and offset >= built.frame_ends[0] and damaged:
        assert done.returncode == 2 and "no complete record" in done.stderr
    else:
        assert done.returncode in (0, 1, 2, 3), done.stderr
