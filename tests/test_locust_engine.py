"""The locust engine against real servers: same diffs as the asyncio engine, remote workers, one results file.

Locust runs only in subprocesses (its gevent would patch this interpreter);
each test also checks that it never leaked into the pytest process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from aiohttp import web

from replaydiff.corpora import CorpusReader, CorpusWriter, Exchange, ReplayRecord, Request, Response, ResultsReader
from replaydiff.corpora.ports import free_port
from replaydiff.diff.analysis import analyze
from replaydiff.eventloop import run_fast
from replaydiff.replayer.engine import Replayer, ReplayOptions
from replaydiff.replayer.locust_engine import LocustJob, run_locust_replay
from replaydiff.replayer.sessions import shard_of
from replaydiff.replayer.plan import Pacing, PlannedRequest, Selection, plan
from replaydiff.replayer.retry import RetryPolicy
from replaydiff.replayer.targets import Target
from replaydiff.demo.system import DemoSystem
from tests.h2server import Reply, Stream, h2_server
from tests.servers import serve
from tests.waiting import readable_records, wait_until

REPO = Path(__file__).parent.parent

pytestmark = pytest.mark.slow  # real replays in subprocesses, a minute or more for the module
DEMO_CORPUS = REPO / "replaydiff" / "demo" / "demo-shop.jsonl.zst"


def _fingerprints(results: Path) -> set[str]:
    reader = ResultsReader(results)
    report = analyze(reader, targets=reader.header["targets"])
    assert report.totals.compared
    return {group.fingerprint for group in report.divergences}


def _without_latency(fingerprints: set[str]) -> set[str]:
    return {f for f in fingerprints if f.split("|")[1] != "latency"}


def _paired_median_slowdown_ms(results: Path, endpoint: str) -> float:
    durations: dict[str, dict[str, int]] = {}
    for record in ResultsReader(results):
        if record.endpoint == endpoint and record.final:
            durations.setdefault(record.exchange_id, {})[record.target] = record.final.duration_us
    return statistics.median(d["candidate"] - d["baseline"] for d in durations.values()) / 1000


def test_locust_and_asyncio_engines_find_the_same_divergences_on_the_demo(tmp_path: Path) -> None:
    limit, concurrency = 800, 4  # few in flight: a CPU-bound worker would measure its own queueing as latency
    with DemoSystem() as demo:
        asyncio_run = subprocess.run(
            [sys.executable, "-m", "replaydiff.cli", "replay", str(DEMO_CORPUS), "--baseline", demo.baseline,
             "--candidate", demo.candidate, "--concurrency", str(concurrency), "--limit", str(limit),
             "-o", str(tmp_path / "asyncio.jsonl.zst")],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )
        assert asyncio_run.returncode == 0, asyncio_run.stderr
        targets = [Target("baseline", demo.baseline), Target("baseline2", demo.baseline),
                   Target("candidate", demo.candidate)]
        summary = run_locust_replay(
            DEMO_CORPUS, targets, tmp_path / "locust.jsonl.zst", workers=2, selection=Selection(limit=limit),
            options=ReplayOptions(concurrency=concurrency), mode="test", log=subprocess.DEVNULL,
        )
    assert summary.completed == limit
    records = list(ResultsReader(tmp_path / "locust.jsonl.zst"))
    assert len(records) == 3 * limit and len({(r.exchange_id, r.target) for r in records}) == 3 * limit
    assert all(r.trace_id and r.final and r.final.span_id for r in records)
    locust_found = _fingerprints(tmp_path / "locust.jsonl.zst")
    asyncio_found = _fingerprints(tmp_path / "asyncio.jsonl.zst")
    assert "GET /api/products/{id}|body|$.price" in locust_found
    # a latency verdict is statistical and tips either way on a loaded 2-core machine, in either engine; what
    # must hold is that both engines measure the planted +30 ms on search
    assert _without_latency(locust_found) == _without_latency(asyncio_found)
    for results in ("locust.jsonl.zst", "asyncio.jsonl.zst"):
        assert _paired_median_slowdown_ms(tmp_path / results, "GET /api/search") > 20
    assert "locust" not in sys.modules and "gevent" not in sys.modules


def _corpus(path: Path, count: int, *, spacing_us: int = 1000) -> Path:
    """`count` GETs of /echo over 7 sessions, each request naming its session, `spacing_us` apart."""
    with CorpusWriter(path, source="test") as writer:
        for i in range(count):
            session = f"s{i % 7}"
            writer.write(Exchange(
                id=f"x{i}", session=session, start_us=i * spacing_us,
                request=Request("GET", "http", "shop.internal", 80, "/echo", query=f"i={i}",
                                headers=[("Host", "shop.internal"), ("X-Session", session)]),
                response=Response(200, body=b"{}"),
            ))
    return path


def _echo_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path_qs, "session": request.headers.get("X-Session")})

    app = web.Application()
    app.router.add_get("/echo", echo)
    return app


def test_a_worker_started_with_replaydiff_worker_joins_and_sessions_keep_order(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "c.jsonl.zst", 120)
    port = free_port()  # the remote worker is told it before the master binds it, as a user would be
    with serve(_echo_app()) as url:
        remote = subprocess.Popen(
            [sys.executable, "-c", "from replaydiff.commands.worker import worker; worker()",
             "--master", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO,
        )
        try:
            summary = run_locust_replay(
                corpus, [Target("baseline", url), Target("candidate", url)], tmp_path / "r.jsonl.zst", workers=1,
                remote_workers=1, port=port, pacing=Pacing(speed=20), log=subprocess.DEVNULL,
            )
            assert remote.wait(30) == 0
        finally:
            remote.kill()
    assert summary.completed == 120
    reader = ResultsReader(tmp_path / "r.jsonl.zst")
    records = list(reader)
    assert reader.complete and reader.end["interrupted"] is False and "locust 2 workers" in reader.header["mode"]
    assert len(records) == 240
    for session in range(7):
        sent = sorted((r.final.sent_us, int(r.exchange_id[1:])) for r in records
                      if r.target == "candidate" and int(r.exchange_id[1:]) % 7 == session and r.final)
        assert [i for _, i in sent] == sorted(i for _, i in sent)
    assert "locust" not in sys.modules


_INTERRUPTIBLE = """
import sys
from pathlib import Path
from replaydiff.replayer.locust_engine import run_locust_replay
from replaydiff.replayer.targets import Target
try:
    run_locust_replay(Path(sys.argv[1]), [Target("baseline", sys.argv[2]), Target("candidate", sys.argv[2])],
                      Path(sys.argv[3]), workers=2)
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_ctrl_c_stops_every_locust_process_and_leaves_a_valid_results_file(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "c.jsonl.zst", 400, spacing_us=20_000)  # 8 s of traffic at speed 1
    with serve(_echo_app()) as url:
        replay = subprocess.Popen([sys.executable, "-c", _INTERRUPTIBLE, str(corpus), url, str(tmp_path / "r.jsonl.zst")],
                                  cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)  # its own process group, as a terminal's Ctrl-C sees it
        wait_until(lambda: readable_records(tmp_path / "r.jsonl.zst") >= 20, "the first records of the replay",
                   timeout_s=60)
        os.killpg(replay.pid, signal.SIGINT)
        assert replay.wait(30) == 130
    reader = ResultsReader(tmp_path / "r.jsonl.zst")
    records = list(reader)
    assert reader.complete and reader.end["interrupted"] is True
    assert 0 < len(records) < 800
    leftovers = subprocess.run(["pgrep", "-g", str(replay.pid)], capture_output=True, text=True).stdout
    assert not leftovers.strip()


def test_a_worker_killed_mid_replay_ends_the_run_with_a_one_line_error_and_valid_results(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "c.jsonl.zst", 600, spacing_us=20_000)  # 12 s of traffic at speed 1
    with serve(_echo_app()) as url:
        replay = subprocess.Popen(
            [sys.executable, "-m", "replaydiff.cli", "replay", str(corpus), "--baseline", url, "--candidate", url,
             "--engine", "locust", "--workers", "2", "-o", str(tmp_path / "r.jsonl.zst")],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        wait_until(lambda: readable_records(tmp_path / "r.jsonl.zst") >= 20, "the first records of the replay",
                   timeout_s=60)
        workers = [p for p in psutil.Process(replay.pid).children() if "--worker" in p.cmdline()]
        assert len(workers) == 2
        workers[0].kill()
        _, stderr = replay.communicate(timeout=30)
    assert replay.returncode == 2, stderr
    assert "stopped answering mid-replay" in stderr and "Traceback" not in stderr
    reader = ResultsReader(tmp_path / "r.jsonl.zst")
    records = list(reader)
    assert reader.complete and reader.end["interrupted"] is True
    assert 0 < len(records) < 1800


def test_the_job_survives_its_trip_to_the_workers() -> None:
    job = LocustJob(
        corpus="c", output="o", summary="s", mode="m",
        targets=[Target("candidate", "http://127.0.0.1:1", [("baggage", "sd-routing-key=k")])],
        pacing=Pacing(speed=2.5), selection=Selection(filters=("POST", "/api/*"), limit=5, loops=2),
        options=ReplayOptions(concurrency=4, retry=RetryPolicy(retries=2, retry_on=frozenset({"503", "reset"}))),
    )
    assert LocustJob.from_json(json.loads(json.dumps(job.to_json()))) == job


def test_sharding_is_stable_and_spreads_sessions() -> None:
    shards = [shard_of(f"session-{i}", 4) for i in range(400)]
    assert shards == [shard_of(f"session-{i}", 4) for i in range(400)]
    assert {shards.count(s) for s in range(4)} <= set(range(70, 131))


def test_replay_command_runs_on_the_locust_engine(tmp_path: Path) -> None:
    """The command line a user types: `replay --engine locust --workers N` writes the usual results file."""
    with DemoSystem() as demo:
        result = subprocess.run(
            [sys.executable, "-m", "replaydiff.cli", "replay", str(DEMO_CORPUS), "--baseline", demo.baseline,
             "--candidate", demo.candidate, "--engine", "locust", "--workers", "2", "--concurrency", "4",
             "--limit", "120", "-o", str(tmp_path / "r.jsonl.zst")],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "on locust with 2 local" in result.stderr
    reader = ResultsReader(tmp_path / "r.jsonl.zst")
    records = list(reader)
    assert reader.complete
    assert len(records) == 360 and {r.target for r in records} == {"baseline", "baseline2", "candidate"}


def _stateful_corpus(path: Path, sessions: int, http_version: str = "HTTP/1.1") -> Path:
    """Per session: create an order (recorded id 1000+k, answered slowly on replay), read it back after 60 ms of
    think time, then call an endpoint that fails once per trace (a retry)."""
    with CorpusWriter(path, source="test") as writer:
        for k in range(sessions):
            start = k * 40_000
            common = dict(scheme="http", host="shop.internal", port=80, headers=[("Host", "shop.internal")],
                          http_version=http_version)
            writer.write(Exchange(id=f"create{k}", session=f"s{k}", start_us=start, duration_us=5_000,
                                  request=Request("POST", path="/orders", body=b"{}", **common),
                                  response=Response(201, body=json.dumps({"order_id": 1000 + k}).encode())))
            writer.write(Exchange(id=f"read{k}", session=f"s{k}", start_us=start + 65_000, duration_us=5_000,
                                  request=Request("GET", path=f"/orders/{1000 + k}", **common),
                                  response=Response(200, body=b"{}")))
            writer.write(Exchange(id=f"flaky{k}", session=f"s{k}", start_us=start + 80_000, duration_us=1_000,
                                  request=Request("GET", path="/flaky", **common), response=Response(200, body=b"{}")))
    return path


def _stateful_app() -> web.Application:
    orders = itertools.count(50_000)
    known: set[str] = set()
    seen_traces: set[str] = set()

    async def create(request: web.Request) -> web.Response:
        await asyncio.sleep(0.25)  # much slower than recorded: the read must wait for it, plus its think time
        order_id = next(orders)
        known.add(str(order_id))
        return web.json_response({"order_id": order_id}, status=201)

    async def read(request: web.Request) -> web.Response:
        return web.json_response({}, status=200 if request.match_info["id"] in known else 404)

    async def flaky(request: web.Request) -> web.Response:
        trace = request.headers["traceparent"].split("-")[1]
        first = trace not in seen_traces
        seen_traces.add(trace)
        return web.json_response({}, status=503 if first else 200)

    app = web.Application()
    app.router.add_post("/orders", create)
    app.router.add_get("/orders/{id}", read)
    app.router.add_get("/flaky", flaky)
    return app


def _stateful_h2() -> Callable[[Stream], Reply]:
    """`_stateful_app` as an HTTP/2 server's answers."""
    orders = itertools.count(50_000)
    known: set[str] = set()
    seen_traces: set[str] = set()

    def respond(stream: Stream) -> Reply:
        path = stream.header(":path") or ""
        if stream.header(":method") == "POST":
            order_id = next(orders)
            known.add(str(order_id))
            return Reply(201, body=json.dumps({"order_id": order_id}).encode(), delay_s=0.25)
        if path.startswith("/orders/"):
            return Reply(200 if path.rsplit("/", 1)[1] in known else 404, body=b"{}")
        trace = (stream.header("traceparent") or "").split("-")[1]
        first = trace not in seen_traces
        seen_traces.add(trace)
        return Reply(503 if first else 200, body=b"{}")

    return respond


@contextlib.contextmanager
def _stateful_server(http_version: str) -> Iterator[str]:
    if http_version == "HTTP/2.0":
        with h2_server(_stateful_h2()) as (url, _):
            yield url
    else:
        with serve(_stateful_app()) as url:
            yield url


def _send_plan(records: list[ReplayRecord]) -> dict[tuple[str, str], tuple[str, int, int | None]]:
    """What each target was sent and how it ended: (trace id, attempts, final status) per exchange and target."""
    return {(r.exchange_id, r.target): (r.trace_id, len(r.attempts), r.final.status if r.final else None)
            for r in records}


def _check_timing(records: list[ReplayRecord], planned: dict[str, PlannedRequest]) -> None:
    """Each request left when the session loop says (`replayer.session_loop`): at its due time, or its think
    time after the previous request's answers would have come had it left on time; never early."""
    by_id: dict[str, list[ReplayRecord]] = {}
    for record in records:
        by_id.setdefault(record.exchange_id, []).append(record)
    for exchange_id, previous_id in [(f"read{k}", f"create{k}") for k in range(6)]:
        lag_us = by_id[exchange_id][0].schedule_lag_us
        planned_for_us = min(r.attempts[0].sent_us for r in by_id[exchange_id]) - lag_us
        previous = by_id[previous_id]
        answered_on_time_us = (max(r.attempts[-1].sent_us + r.attempts[-1].duration_us for r in previous)
                               - previous[0].schedule_lag_us)
        expected_us = max(planned[exchange_id].due_s * 1e6, answered_on_time_us + planned[exchange_id].think_s * 1e6)
        assert expected_us - 2_000 <= planned_for_us <= expected_us + 100_000, (exchange_id, planned_for_us,
                                                                                  expected_us)
        assert lag_us >= 0


@pytest.mark.parametrize("http_version", ["HTTP/1.1", "HTTP/2.0"])
def test_both_engines_send_the_same_plan(tmp_path: Path, http_version: str) -> None:
    """The same corpus and options on the asyncio engine and the locust engine: the same requests to each target,
    the same trace ids, the same retries, the same learned ids, and each request sent at the moment the one
    session loop both engines run gives it; over HTTP/1.1 and over HTTP/2 (h2c)."""
    corpus = _stateful_corpus(tmp_path / "c.jsonl.zst", 6, http_version)
    options = ReplayOptions(retry=RetryPolicy(retries=1, backoff_s=0.01), trace_salt="same-plan")
    planned = {p.exchange.id: p for p in plan([CorpusReader(corpus)])}
    asyncio_records: list[ReplayRecord] = []
    with _stateful_server(http_version) as url:  # a fresh server per engine: it fails each trace id's first call
        targets = [Target("baseline", url), Target("candidate", url)]
        run_fast(Replayer(targets, sink=asyncio_records.append, options=options).run(plan([CorpusReader(corpus)])))
    with _stateful_server(http_version) as url:
        targets = [Target("baseline", url), Target("candidate", url)]
        run_locust_replay(corpus, targets, tmp_path / "locust.jsonl.zst", workers=1, options=options,
                          log=subprocess.DEVNULL)
    locust_records = list(ResultsReader(tmp_path / "locust.jsonl.zst"))
    assert _send_plan(locust_records) == _send_plan(asyncio_records)
    plan_of = _send_plan(asyncio_records)
    assert len(plan_of) == 6 * 3 * 2
    assert {plan_of[(f"read{k}", t)][1:] for k in range(6) for t in ("baseline", "candidate")} == {(1, 200)}
    assert {plan_of[(f"flaky{k}", t)][1:] for k in range(6) for t in ("baseline", "candidate")} == {(2, 200)}
    _check_timing(asyncio_records, planned)
    _check_timing(locust_records, planned)
    assert {r.response.http_version for r in asyncio_records + locust_records if r.response} == {http_version}
    assert "locust" not in sys.modules and "gevent" not in sys.modules
