"""HAR 1.2 import and export: round trips, browser-written files, and one-line errors for bad input."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replaydiff.corpora import CorpusReader, CorpusWriter, Exchange, Request, Response, header_value
from replaydiff.corpora.container import decompressed_bytes
from replaydiff.recorder.har import exchanges_from_har, har_from_exchanges
from replaydiff.recorder.sanitize import QUERY_MASK
from tests.strategies import exchanges

REPLAYDIFF = Path(sys.executable).with_name("replaydiff")
STARTED = "2024-05-01T10:00:00Z"


def run_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([REPLAYDIFF, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=30)


def as_har_keeps_it(exchange: Exchange, epoch_us: int) -> Exchange:
    """What a HAR round trip preserves: everything but upstream calls, host case, and the corpus start offset."""
    response = exchange.response
    tags = dict(exchange.tags)
    if response is None:
        tags.setdefault("error", "no response")
    else:
        encoding = (header_value(response.headers, "content-encoding") or "").strip().lower()
        noted = encoding if encoding not in ("", "identity") else None
        response = dataclasses.replace(response, original_encoding=noted)
    return dataclasses.replace(
        exchange,
        start_us=exchange.start_us - epoch_us,
        request=dataclasses.replace(exchange.request, host=exchange.request.host.lower()),
        response=response,
        tags=tags,
        upstream=[],
    )


@settings(max_examples=60)
@given(batch=st.lists(exchanges, max_size=6))
def test_export_then_import_keeps_what_har_can_hold(batch: list[Exchange]) -> None:
    har = json.loads(json.dumps(har_from_exchanges(batch, started=datetime(2024, 5, 1, tzinfo=UTC))))
    epoch_us = min((exchange.start_us for exchange in batch), default=0)
    assert exchanges_from_har(har) == [as_har_keeps_it(exchange, epoch_us) for exchange in batch]


def test_cli_round_trip_through_a_har_file(tmp_path: Path) -> None:
    duplicated = [("X-Dup", "1"), ("X-Dup", "2")]
    gzipped = Response(200, headers=[("Content-Encoding", "gzip")], body=b'{"ok": true}', original_encoding="gzip")
    recorded = [
        Exchange(
            "a1",
            "s1",
            0,
            Request("POST", "http", "api.local", 8080, "/items", "page=2", headers=duplicated, body=b"\x00\xff"),
            Response(201, "Created", headers=[("Content-Type", "application/octet-stream")], body=bytes(range(256))),
            duration_us=1500,
        ),
        Exchange("a2", "s2", 2500, Request("GET", "https", "api.local", 443, "/items/1"), gzipped, duration_us=10),
        Exchange("a3", "s1", 4000, Request("GET", "http", "api.local", 8080, "/down"), None, tags={"error": "refused"}),
    ]
    corpus = tmp_path / "in.jsonl.zst"
    with CorpusWriter(corpus, source="test") as writer:
        for exchange in recorded:
            writer.write(exchange)

    exported = run_cli("export", corpus, "-o", "out.har", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    har = json.loads((tmp_path / "out.har").read_text())
    assert har["log"]["version"] == "1.2"
    assert har["log"]["entries"][0]["response"]["content"]["encoding"] == "base64"

    imported = run_cli("import", "out.har", "-o", "back.jsonl.zst", "--session-by", "connection", cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    reader = CorpusReader(tmp_path / "back.jsonl.zst")
    assert list(reader) == recorded
    # Grouped by client (the default): without credentials or addresses, the HAR's own sessions are the clients.
    assert run_cli("import", "out.har", "-o", "clients.jsonl.zst", cwd=tmp_path).returncode == 0
    renamed = {"s1": "client-1", "s2": "client-2"}
    assert list(CorpusReader(tmp_path / "clients.jsonl.zst")) == [
        dataclasses.replace(exchange, session=renamed[exchange.session]) for exchange in recorded
    ]
    assert reader.header["source"] == "har:out.har"
    assert reader.header["sanitizer"]["policy"] == "defaults"


def test_import_of_a_browser_har_sanitizes_and_maps_sessions_and_timing(tmp_path: Path) -> None:
    entry = {
        "pageref": "page_1",
        "startedDateTime": "2024-05-01T10:00:00.250Z",
        "time": 12.5,
        "request": {
            "method": "get",
            "url": "https://shop.example/api/cart?api_key=browserkey1&lang=en",
            "httpVersion": "h2",
            "headers": [
                {"name": "authorization", "value": "Bearer browsertoken2"},
                {"name": "cookie", "value": "sid=browsercookie3; theme=dark"},
                {"name": "accept", "value": "application/json"},
            ],
            "cookies": [{"name": "sid", "value": "browsercookie3"}],
            "queryString": [{"name": "api_key", "value": "browserkey1"}],
        },
        "response": {
            "status": 200,
            "statusText": "",
            "httpVersion": "h2",
            "headers": [
                {"name": "content-encoding", "value": "gzip"},
                {"name": "set-cookie", "value": "sid=browsercookie4; Path=/"},
            ],
            "content": {"size": 2, "text": base64.b64encode(b"[]").decode(), "encoding": "base64"},
        },
        "connection": "4711",
    }
    failed = {
        "startedDateTime": STARTED,
        "time": 3,
        "request": {
            "method": "POST",
            "url": "http://shop.example:8000/api/pay",
            "headers": [],
            "postData": {
                "mimeType": "application/x-www-form-urlencoded",
                "params": [{"name": "amount", "value": "1 000"}],
            },
        },
        "response": {"status": 0, "headers": [], "content": {"size": 0}, "_error": "net::ERR_CONNECTION_REFUSED"},
    }
    (tmp_path / "browser.har").write_text(json.dumps({"log": {"version": "1.2", "entries": [entry, failed]}}))
    result = run_cli("import", "browser.har", "-o", "b.jsonl.zst", cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    raw = decompressed_bytes(tmp_path / "b.jsonl.zst")
    for secret in (b"browserkey1", b"browsertoken2", b"browsercookie3", b"browsercookie4"):
        assert secret not in raw
    cart, pay = CorpusReader(tmp_path / "b.jsonl.zst")
    assert (cart.session, cart.start_us, cart.duration_us) == ("client-1", 250_000, 12_500)  # by its credentials
    assert (cart.request.method, cart.request.port, cart.request.http_version) == ("GET", 443, "HTTP/2.0")
    assert cart.request.query == f"api_key={QUERY_MASK}&lang=en"
    (auth, authorization), (cookie, cookies), accept = cart.request.headers  # pseudonymized: shapes kept
    assert (auth, cookie, accept) == ("authorization", "cookie", ("accept", "application/json"))
    assert re.fullmatch(r"Bearer [a-z]+\d", authorization) and re.fullmatch(r"sid=[a-z]+\d; theme=[a-z]{4}", cookies)
    assert cart.response is not None and cart.response.body == b"[]" and cart.response.original_encoding == "gzip"
    assert (pay.session, pay.start_us, pay.response) == ("client-2", 0, None)  # anonymous: the file's own session
    assert pay.tags == {"error": "net::ERR_CONNECTION_REFUSED"}
    assert pay.request.body == b"amount=1+000"


def one_entry_har(entry: dict[str, object]) -> str:
    return json.dumps({"log": {"version": "1.2", "entries": [entry]}})


BAD_HARS = {
    "not-json.har": "this is not json",
    "no-log.har": '{"entries": []}',
    "no-url.har": one_entry_har({"startedDateTime": STARTED, "request": {}, "response": {"status": 200}}),
    "bad-time.har": one_entry_har({"startedDateTime": "yesterday", "request": {}, "response": {}}),
    "bad-base64.har": one_entry_har(
        {
            "startedDateTime": STARTED,
            "request": {"method": "GET", "url": "http://h/"},
            "response": {"status": 200, "content": {"text": "%%%", "encoding": "base64"}},
        }
    ),
}


@pytest.mark.parametrize("name", ["missing.har", *BAD_HARS])
def test_bad_har_is_one_line_and_exit_2(tmp_path: Path, name: str) -> None:
    if name in BAD_HARS:
        (tmp_path / name).write_text(BAD_HARS[name])
    result = run_cli("import", name, "-o", "x.jsonl.zst", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"replaydiff: error: {name}: ")
    assert not (tmp_path / "x.jsonl.zst").exists(), "no half-written corpus"


@pytest.mark.parametrize("content", [None, b"{}"])
def test_export_of_a_missing_or_foreign_file_is_one_line_and_exit_2(tmp_path: Path, content: bytes | None) -> None:
    if content is not None:
        (tmp_path / "c.jsonl.zst").write_bytes(gzip.compress(content))
    result = run_cli("export", "c.jsonl.zst", "-o", "x.har", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def _entries_har(entries: list[dict[str, object]]) -> str:
    return json.dumps({"log": {"version": "1.2", "entries": entries}})


GOOD_ENTRY = {"startedDateTime": STARTED, "request": {"method": "GET", "url": "http://h/a"}, "response": {"status": 200}}


def test_bad_har_entries_are_skipped_counted_and_named_from_1(tmp_path: Path) -> None:
    entries = [GOOD_ENTRY, {"startedDateTime": STARTED, "request": {}, "response": {"status": 200}}, GOOD_ENTRY,
               {"startedDateTime": "yesterday", "request": {}, "response": {}}]  # fmt: skip
    (tmp_path / "mixed.har").write_text(_entries_har(entries))
    result = run_cli("import", "mixed.har", "-o", "c.jsonl.zst", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "imported 2 exchanges" in result.stderr
    assert "replaydiff: skipped entries: 2 (entry 2: malformed (" in result.stderr
    assert "; entry 4: no valid startedDateTime" in result.stderr
    assert len(list(CorpusReader(tmp_path / "c.jsonl.zst"))) == 2

    strict = run_cli("import", "mixed.har", "-o", "s.jsonl.zst", "--strict", cwd=tmp_path)
    assert strict.returncode == 2
    assert strict.stderr.startswith("replaydiff: error: mixed.har: entry 2: malformed (")
    assert strict.stderr.count("\n") == 1 and not (tmp_path / "s.jsonl.zst").exists()
