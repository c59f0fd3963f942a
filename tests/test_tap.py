"""The tap between real services and a real dependency: exact attribution and seeded faults."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

from replaydiff.corpora import CorpusWriter, Exchange, Request, Response, ResultsReader
from replaydiff.corpora.trace import exchange_key
from tests.servers import serve, stock_app

REPLAYDIFF = [sys.executable, "-m", "replaydiff.cli"]
INVENTORY = web.AppKey("inventory", str)

FAULTS = """
seed = 11
[[fault]]
dependency = "inventory"
status = 503
fraction = 0.3
"""


def _service(inventory_url: str, retries: int) -> web.Application:
    """A service that calls inventory, propagating traceparent, and retries a 503 `retries` times."""

    async def product(request: web.Request) -> web.Response:
        headers = {"traceparent": request.headers["traceparent"]}
        async with aiohttp.ClientSession() as session:
            for _ in range(retries + 1):
                async with session.get(f"{request.app[INVENTORY]}/stock/{request.match_info['sku']}",
                                       headers=headers) as answer:
                    if answer.status != 503:
                        return web.json_response(await answer.json())
        return web.json_response({"error": "inventory unavailable"}, status=503)

    app = web.Application()
    app[INVENTORY] = inventory_url
    app.router.add_get("/product/{sku}", product)
    return app


@contextmanager
def _tap(tmp_path: Path, upstream: str, log: Path) -> Iterator[str]:
    faults = tmp_path / "faults.toml"
    faults.write_text(FAULTS)
    proc = subprocess.Popen(
        [*REPLAYDIFF, "tap", "--route", f"inventory={upstream}", "-o", str(log), "--faults", str(faults),
         "--confdir", str(tmp_path / "conf")],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"inventory (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        yield match.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=20)
        assert proc.returncode == 0, rest


def _corpus(path: Path, count: int) -> Path:
    with CorpusWriter(path, source="test") as writer:
        for i in range(count):
            writer.write(Exchange(id=f"x{i}", session=f"s{i % 7}", start_us=i * 2000,
                                  request=Request("GET", "http", "shop", 80, f"/product/{i}"),
                                  response=Response(200, body=b"{}")))
    return path


def _replay(tmp_path: Path, corpus: Path, base: str, cand: str, log: Path, name: str) -> list:
    out = tmp_path / f"{name}.jsonl.zst"
    result = subprocess.run(
        [*REPLAYDIFF, "replay", str(corpus), "--baseline", base, "--candidate", cand, "--speed", "5",
         "--upstream-log", str(log), "-o", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return list(ResultsReader(out))


def test_attribution_is_exact_and_faults_are_identical_for_every_target(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "c.jsonl.zst", 60)
    log = tmp_path / "up.jsonl.zst"
    with serve(stock_app()) as inventory, _tap(tmp_path, inventory, log) as tapped:
        with serve(_service(tapped, retries=1)) as base, serve(_service(tapped, retries=3)) as cand:
            records = _replay(tmp_path, corpus, base, cand, log, "run1")
            rerun = _replay(tmp_path, corpus, base, cand, log, "run2")
    assert len(records) == 180
    first_outcome: dict[str, set[int | None]] = defaultdict(set)
    for record in records:
        assert record.upstream, record.exchange_id
        assert all(call.trace_id == record.trace_id for call in record.upstream)
        assert all(call.dependency == "inventory" and call.path.startswith("/stock/") for call in record.upstream)
        first_outcome[record.exchange_id].add(record.upstream[0].status)
        assert {exchange_key(c.trace_id) for c in record.upstream} == {exchange_key(record.trace_id)}
    # ordinal 0 of each exchange met the same fault (or none) at every target
    assert all(len(statuses) == 1 for statuses in first_outcome.values())
    faulted = [x for x, statuses in first_outcome.items() if statuses == {503}]
    assert 5 <= len(faulted) <= 35  # about 30 % of 60
    # the candidate's extra retries show as extra upstream calls where faults repeat
    calls = {(r.exchange_id, r.target): [c.status for c in r.upstream] for r in records}
    assert any(len(calls[(x, "candidate")]) > len(calls[(x, "baseline")]) for x in faulted)
    assert all(calls[(x, "baseline")] == calls[(x, "baseline2")] for x, _ in calls)
    # the same seed faces the same faults again
    again = {(r.exchange_id, r.target): [c.status for c in r.upstream] for r in rerun}
    assert again == calls


def _silent_service(inventory_url: str) -> web.Application:
    """A service that does not propagate traceparent: the tap cannot tell whose call it is."""

    async def product(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{request.app[INVENTORY]}/stock/{request.match_info['sku']}") as answer:
                return web.json_response(await answer.json())

    app = web.Application()
    app[INVENTORY] = inventory_url
    app.router.add_get("/product/{sku}", product)
    return app


def test_calls_without_traceparent_are_attributed_by_time_and_marked_approximate(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "c.jsonl.zst", 12)
    log = tmp_path / "up.jsonl.zst"
    with serve(stock_app()) as inventory:
        proc = subprocess.Popen(
            [*REPLAYDIFF, "tap", "--route", f"baseline/inventory={inventory}", "--route",
             f"candidate/inventory={inventory}", "-o", str(log), "--confdir", str(tmp_path / "conf")],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            base_tap = re.search(r"baseline/inventory (http://127\.0\.0\.1:\d+)", line)
            cand_tap = re.search(r"candidate/inventory (http://127\.0\.0\.1:\d+)", line)
            assert base_tap and cand_tap, line
            with serve(_silent_service(base_tap.group(1))) as base, serve(_silent_service(cand_tap.group(1))) as cand:
                out = tmp_path / "r.jsonl.zst"
                result = subprocess.run(
                    [*REPLAYDIFF, "replay", str(corpus), "--baseline", base, "--baseline2", base, "--candidate",
                     cand, "--concurrency", "1", "--upstream-log", str(log), "-o", str(out)],
                    capture_output=True, text=True, timeout=120,
                )  # fmt: skip
                assert result.returncode == 0, result.stderr
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=20)
    records = list(ResultsReader(out))
    candidate = [r for r in records if r.target == "candidate"]
    assert all(len(r.upstream) == 1 for r in candidate)
    for record in candidate:
        [call] = record.upstream
        assert call.approximate and call.dependency == "inventory" and not call.trace_id
        assert call.path == f"/stock/{record.exchange_id.removeprefix('x')}"  # the right request, by time
    baseline_calls = [c for r in records if r.target.startswith("baseline") for c in r.upstream]
    assert len(baseline_calls) == 24 and all(c.approximate for c in baseline_calls)


def test_reset_and_delay_faults_reach_the_service_and_are_logged(tmp_path: Path) -> None:
    faults = tmp_path / "faults.toml"
    faults.write_text('[[fault]]\npath = "/stock/7"\nreset = true\n\n[[fault]]\npath = "/stock/8"\ndelay_ms = 300\n')
    corpus = tmp_path / "c.jsonl.zst"
    with CorpusWriter(corpus, source="test") as writer:
        for sku in (7, 8):
            writer.write(Exchange(id=f"x{sku}", session=f"s{sku}", start_us=0,
                                  request=Request("GET", "http", "shop", 80, f"/product/{sku}"), response=None))
    log = tmp_path / "up.jsonl.zst"
    with serve(stock_app()) as inventory:
        proc = subprocess.Popen(
            [*REPLAYDIFF, "tap", "--route", f"inventory={inventory}", "-o", str(log), "--faults", str(faults),
             "--confdir", str(tmp_path / "conf")],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stderr is not None
            tapped = re.search(r"inventory (http://127\.0\.0\.1:\d+)", proc.stderr.readline())
            assert tapped
            with serve(_service(tapped.group(1), retries=0)) as service:
                records = _replay(tmp_path, corpus, service, service, log, "faults")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=20)
    for record in records:
        if record.exchange_id == "x7":
            # aiohttp itself tries a reset keep-alive request once more: every try met the reset
            assert record.upstream and all(c.error == "reset" and c.fault == "reset" for c in record.upstream)
            assert record.response is not None and record.response.status >= 500  # the service saw it fail
        else:
            [call] = record.upstream
            assert call.status == 200 and call.fault == "delay 300 ms" and call.duration_us >= 300_000
