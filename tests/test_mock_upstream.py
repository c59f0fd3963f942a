"""Dependency mocks: record a service and its dependency calls, then replay it with the dependency switched off.

Real processes throughout: the recorder and the taps are `replaydiff` subprocesses, the service and its
dependency aiohttp servers on 127.0.0.1; the dependency answers with a token drawn when it starts, so an
answer that carries it can only have come from the recording once the dependency is gone.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import aiohttp
import httpx
from aiohttp import web

from replaydiff.corpora import CorpusReader, Exchange, ResultsReader, UpstreamCall, UpstreamLogReader, UpstreamLogWriter
from replaydiff.corpora.trace import TRACE_TAG
from tests.servers import self_signed_certificate, serve, tls_server_context
from tests.waiting import wait_until

REPLAYDIFF = [sys.executable, "-m", "replaydiff.cli"]
DEPENDENCY = web.AppKey("dependency", str)
VARIANT = web.AppKey("variant", str)
TOKEN = web.AppKey("token", str)
PROPAGATE = web.AppKey("propagate", bool)
GATE = web.AppKey("gate", asyncio.Barrier)
PRODUCTS = 12
BURST, BURST_SKU = 4, 100


def inventory_app() -> web.Application:
    app = web.Application()
    app[TOKEN] = secrets.token_hex(8)
    app[GATE] = asyncio.Barrier(BURST)

    async def stock(request: web.Request) -> web.Response:
        sku = int(request.match_info["sku"])
        if sku >= BURST_SKU:  # a burst's calls wait for one another: its exchanges are all in flight at once
            async with asyncio.timeout(10):
                await request.app[GATE].wait()
        return web.json_response({"sku": sku, "lot": request.app[TOKEN]})

    async def price(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"cents": 100 * body["sku"] * body["qty"], "lot": request.app[TOKEN]})

    app.router.add_get("/stock/{sku}", stock)
    app.router.add_post("/price", price)
    return app


def service_app(dependency: str, variant: str, *, propagate: bool = True) -> web.Application:
    """`baseline`, or `candidate`: per sku % 3, a changed request body, an extra call, or a call left out.
    `propagate`: passes the request's `traceparent` on to its calls, as an instrumented service does."""
    app = web.Application()
    app[DEPENDENCY], app[VARIANT], app[PROPAGATE] = dependency, variant, propagate

    async def product(request: web.Request) -> web.Response:
        sku = int(request.match_info["sku"])
        traced = request.app[PROPAGATE] and "traceparent" in request.headers
        headers = {"traceparent": request.headers["traceparent"]} if traced else {}
        candidate = request.app[VARIANT] == "candidate"
        base = request.app[DEPENDENCY]
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.get(f"{base}/stock/{sku}") as answer:
                stock = await answer.json()
            if candidate and sku % 3 == 1:
                async with session.get(f"{base}/audit/{sku}") as answer:
                    await answer.read()
            priced: dict[str, object] = {}
            if not (candidate and sku % 3 == 2):
                qty = 2 if candidate and sku % 3 == 0 else 1
                async with session.post(f"{base}/price", json={"sku": sku, "qty": qty}) as answer:
                    priced = await answer.json()
        return web.json_response({"stock": stock, "price": priced})

    app.router.add_get("/product/{sku}", product)
    return app


@contextmanager
def _process(arguments: list[str], ready: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A replaydiff subprocess that announces itself on stderr; yields it with the announcement."""
    proc = subprocess.Popen([*REPLAYDIFF, *arguments], stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert ready in line, line
        yield proc, line
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
        assert proc.returncode == 0, rest


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _record(tmp_path: Path, *, propagate: bool = True, burst: bool = False) -> tuple[Path, Path, str]:
    """(corpus, upstream log, the real inventory's token) of a recording through `record --inject-traceparent`:
    PRODUCTS product pages one after the other, then with `burst` BURST more at once."""
    corpus, log = tmp_path / "shop.jsonl.zst", tmp_path / "upstream.jsonl.zst"
    with serve(inventory := inventory_app()) as inventory_url:
        tap_args = ["tap", "--route", f"inventory={inventory_url}", "-o", str(log), "--confdir", str(tmp_path / "c1")]
        with _process(tap_args, "listening") as (_, line):
            tapped = re.search(r"inventory (http://127\.0\.0\.1:\d+)", line)
            assert tapped, line
            with serve(service_app(tapped.group(1), "baseline", propagate=propagate)) as shop:
                record_args = ["record", "--upstream", shop, "--listen", "127.0.0.1:0", "--inject-traceparent",
                               "-o", str(corpus), "--confdir", str(tmp_path / "c2")]  # fmt: skip
                with _process(record_args, "recording") as (_, announced):
                    proxy = re.search(r"(http://127\.0\.0\.1:\d+)", announced)
                    assert proxy, announced
                    with httpx.Client(base_url=proxy.group(1), timeout=10) as client:
                        for sku in range(1, PRODUCTS + 1):
                            assert client.get(f"/product/{sku}").status_code == 200
                        skus = range(BURST_SKU, BURST_SKU + BURST) if burst else range(0)
                        with ThreadPoolExecutor(BURST) as pool:
                            answers = list(pool.map(lambda n: client.get(f"/product/{n}"), skus))
                        assert all(answer.status_code == 200 for answer in answers)
    calls = 2 * (PRODUCTS + (BURST if burst else 0))
    wait_until(lambda: UpstreamLogReader(log).count() >= calls, "the tap's log closed with every call")
    return corpus, log, inventory[TOKEN]


def _run_mocked(corpus: Path, log: Path, out: Path, *, candidate: str) -> subprocess.CompletedProcess[str]:
    """`replaydiff run --mock-upstreams` of a baseline and a `candidate` variant of the service."""
    port = _free_port()  # the inventory is gone: only the mock listens there
    mocked = f"http://127.0.0.1:{port}"
    with serve(service_app(mocked, "baseline")) as base, serve(service_app(mocked, candidate)) as cand:
        return subprocess.run(
            [*REPLAYDIFF, "run", str(corpus), "--baseline", base, "--candidate", cand, "--speed", "5",
             "--mock-upstreams", str(log), "--route", f"inventory=@{port}", "-o", str(out), "--confirm", "0"],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip


def test_record_then_replay_with_the_dependency_switched_off(tmp_path: Path) -> None:
    corpus, log, token = _record(tmp_path)
    exchanges = list(CorpusReader(corpus))
    assert len(exchanges) == PRODUCTS and all(len(x.tags[TRACE_TAG]) == 32 for x in exchanges)
    calls = list(UpstreamLogReader(log))
    assert {c.trace_id for c in calls} == {x.tags[TRACE_TAG] for x in exchanges}  # every call joins its exchange
    assert all(c.answer is not None and c.request is not None for c in calls)
    inspected = subprocess.run([*REPLAYDIFF, "inspect", str(corpus), "--upstream", str(log)],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
    assert f"inventory: {2 * PRODUCTS} calls (by trace id {2 * PRODUCTS})" in inspected.stdout, inspected.stdout

    out = tmp_path / "results.jsonl.zst"
    run = _run_mocked(corpus, log, out, candidate="candidate")
    assert run.returncode == 1, run.stderr + run.stdout
    assert "Traceback" not in run.stderr
    records = list(ResultsReader(out))
    baseline = [r for r in records if r.target == "baseline"]
    assert len(baseline) == PRODUCTS
    for record in baseline:  # the baseline made the recorded calls: each answered exactly, from the recording
        assert [c.mock for c in record.upstream] == ["exact", "exact"], record.upstream
        assert record.response is not None and json.loads(record.response.body)["stock"]["lot"] == token
    report = run.stdout
    for finding in ("unexpected call to inventory", "missing call to inventory", "call changed to inventory"):
        assert f"{finding} on GET /product/{{id}}" in report, report
    candidate = {r.exchange_id: r for r in records if r.target == "candidate"}
    changed = [c for r in candidate.values() for c in r.upstream if c.mock == "exchange" and c.mock_changes]
    assert len(changed) == PRODUCTS // 3 and all(c.mock_changes == ["body $.qty: 1 → 2"] for c in changed)
    unexpected = [c for r in candidate.values() for c in r.upstream if c.mock == "miss"]
    assert unexpected and all(c.path.startswith("/audit/") and c.status == 502 for c in unexpected)


def test_a_recording_of_another_corpus_is_refused_in_one_line(tmp_path: Path) -> None:
    corpus, log, _ = _record(tmp_path)
    other = tmp_path / "other.jsonl.zst"
    with UpstreamLogWriter(other) as writer:  # the same calls, under trace ids no exchange of the corpus has
        for number, call in enumerate(UpstreamLogReader(log)):
            writer.write(replace(call, trace_id=f"{number:032x}"))
    run = subprocess.run(
        [*REPLAYDIFF, "run", str(corpus), "--baseline", "http://127.0.0.1:9", "--candidate", "http://127.0.0.1:9",
         "--mock-upstreams", str(other), "--route", f"inventory=@{_free_port()}", "-o", str(tmp_path / "r.zst")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "no trace id in common" in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_calls_of_a_service_that_does_not_propagate_traceparent_are_attributed_by_time(tmp_path: Path) -> None:
    """Recorded one at a time, each call joins its exchange by time; in a burst the calls that started while
    several exchanges were in flight are left unattached (ambiguous). A later version of the service that
    propagates `traceparent` is then mocked within each exchange from the calls attributed by time."""
    corpus, log, token = _record(tmp_path, propagate=False, burst=True)
    reader = CorpusReader(corpus)
    exchanges = list(reader)
    epoch = reader.end["epoch_unix_us"]
    calls = list(UpstreamLogReader(log))
    assert len(calls) == 2 * (PRODUCTS + BURST) and not any(c.trace_id for c in calls)

    def in_flight(call: UpstreamCall) -> list[Exchange]:  # by brute force, what corpora.windows sweeps for
        return [x for x in exchanges if epoch + x.start_us <= call.start_us <= epoch + x.start_us + x.duration_us]

    owners = {id(call): in_flight(call) for call in calls}
    for call in calls:
        assert call.request is not None
        sku = json.loads(call.request.body)["sku"] if call.path == "/price" else int(call.path.rsplit("/", 1)[1])
        if sku < BURST_SKU:  # one request at a time: the one in flight is the call's own
            assert [x.request.path for x in owners[id(call)]] == [f"/product/{sku}"], call
    by_time = sum(len(found) == 1 for found in owners.values())
    ambiguous = sum(len(found) > 1 for found in owners.values())
    assert by_time >= 2 * PRODUCTS and ambiguous >= BURST - 1  # each burst's stock call waited for the others
    assert by_time + ambiguous == len(calls)

    inspected = subprocess.run([*REPLAYDIFF, "inspect", str(corpus), "--upstream", str(log)],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
    expected = f"inventory: {len(calls)} calls (by time (approximate) {by_time}, ambiguous {ambiguous})"
    assert expected in inspected.stdout, inspected.stdout

    out = tmp_path / "results.jsonl.zst"
    run = _run_mocked(corpus, log, out, candidate="baseline")  # a later version: it propagates traceparent
    assert run.returncode == 0, run.stderr + run.stdout
    attached = {x.id for x in exchanges if any(len(owners[id(c)]) == 1 and owners[id(c)][0] is x for c in calls)}
    assert f"the recording has calls of {len(attached)} of {len(exchanges)} exchanges" in run.stderr, run.stderr
    answered = re.search(r"mock: (\d+) calls answered \(exact \d+.*, (\d+) of them from calls attributed by time\)",
                         run.stderr)  # fmt: skip
    assert answered and int(answered.group(1)) == 3 * len(calls), run.stderr  # by baseline, baseline#2, candidate
    assert int(answered.group(2)) >= 3 * 2 * PRODUCTS, run.stderr
    sequential = {x.id for x in exchanges if int(x.request.path.rsplit("/", 1)[1]) < BURST_SKU}
    records = list(ResultsReader(out))
    assert len(records) == 3 * len(exchanges)
    for record in records:
        assert record.response is not None and json.loads(record.response.body)["stock"]["lot"] == token, record
        how = [(call.mock, call.mock_by_time) for call in record.upstream]
        if record.exchange_id in sequential:  # within its exchange, from the calls attributed to it by time
            assert how == [("exact", True), ("exact", True)], record.upstream
        else:  # a call ambiguous in the recording is answered from across it
            assert len(how) == 2 and "miss" not in {mock for mock, _ in how}, record.upstream


def _traceparent(sku: int) -> dict[str, str]:
    return {"traceparent": f"00-{sku:024x}{0:08x}-{sku:016x}-01"}  # the exchange is in the first 24 digits


def _tap_url(line: str) -> str:
    found = re.search(r"(http://127\.0\.0\.1:\d+)", line)
    assert found, line
    return found.group(1)


def test_an_https_dependency_is_recorded_faulted_and_mocked_through_the_tap(tmp_path: Path) -> None:
    """As a route (the service calls the tap in plain HTTP, the tap calls the dependency over TLS, verified
    against --ca-cert) and as a forward proxy (the service's CONNECT is intercepted with the tap's own CA)."""
    cert, key = self_signed_certificate(tmp_path)
    log, forward_log = tmp_path / "up.jsonl.zst", tmp_path / "forward.jsonl.zst"
    confdir = ["--confdir", str(tmp_path / "mitmproxy")]
    tap_ca = tmp_path / "mitmproxy" / "mitmproxy-ca-cert.pem"  # what the service trusts to go through the proxy
    faults = tmp_path / "faults.toml"
    faults.write_text('[[fault]]\npath = "/stock/3"\nstatus = 503\n')
    with serve(inventory := inventory_app(), ssl_context=tls_server_context(cert, key)) as inventory_url:
        untrusted = ["tap", "--route", f"inventory={inventory_url}", "-o", str(tmp_path / "u.zst"), *confdir]
        with _process(untrusted, "listening") as (_, line), serve(service_app(_tap_url(line), "baseline")) as shop:
            assert httpx.get(f"{shop}/product/1", headers=_traceparent(1)).status_code == 500  # the tap said 502
        [refused] = UpstreamLogReader(tmp_path / "u.zst")
        assert refused.status is None and "Certificate verify failed" in (refused.error or ""), refused

        recording = ["tap", "--route", f"inventory={inventory_url}", "--ca-cert", str(cert), "--faults", str(faults),
                     "-o", str(log), *confdir]  # fmt: skip
        with _process(recording, "listening") as (_, line), serve(service_app(_tap_url(line), "baseline")) as shop:
            for sku in (1, 2, 3):
                assert httpx.get(f"{shop}/product/{sku}", headers=_traceparent(sku)).status_code == 200
        with _process(["tap", "--ca-cert", str(cert), "-o", str(forward_log), *confdir], "listening") as (_, line):
            with httpx.Client(proxy=_tap_url(line), verify=ssl.create_default_context(cafile=tap_ca)) as client:
                assert client.get(f"{inventory_url}/stock/9", headers=_traceparent(9)).status_code == 200
    calls = list(UpstreamLogReader(log))
    assert [(c.path, c.status, c.fault) for c in calls if c.path.startswith("/stock/")] == [
        ("/stock/1", 200, None), ("/stock/2", 200, None), ("/stock/3", 503, "status 503")]  # fmt: skip
    assert all(c.answer is not None and c.trace_id for c in calls) and len(calls) == 6

    token = inventory[TOKEN]  # the inventory is down from here on: what carries its token came from a recording
    with _process(["tap", "--mock", str(log), "--route", "inventory=@0", "-o", str(tmp_path / "m.zst"), *confdir],
                  "listening") as (_, line), serve(service_app(_tap_url(line), "baseline")) as shop:  # fmt: skip
        pages = {sku: httpx.get(f"{shop}/product/{sku}", headers=_traceparent(sku)).json() for sku in (1, 2, 3)}
    assert pages[1]["stock"] == {"sku": 1, "lot": token} and pages[2]["price"] == {"cents": 200, "lot": token}
    assert "fault injected" in pages[3]["stock"]["error"]  # the recorded answer was the fault's
    assert [c.mock for c in UpstreamLogReader(tmp_path / "m.zst")] == ["exact"] * 6
    forward = ["tap", "--mock", str(forward_log), "-o", str(tmp_path / "fm.zst"), *confdir]
    with _process(forward, "listening") as (_, line):
        with httpx.Client(proxy=_tap_url(line), verify=ssl.create_default_context(cafile=tap_ca)) as client:
            assert client.get(f"{inventory_url}/stock/9", headers=_traceparent(9)).json() == {"sku": 9, "lot": token}
            assert client.get(f"{inventory_url}/stock/10", headers=_traceparent(9)).status_code == 502
    assert [c.mock for c in UpstreamLogReader(tmp_path / "fm.zst")] == ["exact", "miss"]
