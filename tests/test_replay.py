"""The replayer against real servers: fan-out, ordering, failures as outcomes, refusals."""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web

from replaydiff.corpora import CorpusWriter, Exchange, Request, Response, ResultsReader
from tests.servers import serve
from tests.waiting import wait_until

NAME = web.AppKey("name", str)

REPLAYDIFF = [sys.executable, "-m", "replaydiff.cli"]


def _exchange(i: int, session: str, method: str = "GET", path: str = "/echo", body: bytes = b"") -> Exchange:
    return Exchange(
        id=f"x{i}",
        session=session,
        start_us=i * 1000,
        request=Request(
            method,
            "http",
            "shop.internal",
            80,
            path,
            query=f"i={i}&tag=a&tag=b",
            headers=[("Host", "shop.internal"), ("X-Dup", "1"), ("X-Dup", "2"), ("X-Session", session)],
            body=body,
        ),
        response=Response(200, body=b"{}"),
    )


def _corpus(path: Path, exchanges: list[Exchange]) -> Path:
    with CorpusWriter(path, source="test") as writer:
        for exchange in exchanges:
            writer.write(exchange)
    return path


def _recording_app(seen: list[tuple[str, dict]]) -> web.Application:
    """Echoes what it received and remembers it, per target name."""

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append(
            (
                request.app[NAME],
                {
                    "method": request.method,
                    "path": request.path_qs,
                    "host": request.headers.get("Host"),
                    "dup": request.headers.getall("X-Dup", []),
                    "session": request.headers.get("X-Session"),
                    "routing": request.headers.get("baggage"),
                    "body": body,
                },
            )
        )
        return web.json_response({"path": request.path_qs})

    async def reset(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.abort()
        await asyncio.sleep(0.1)
        return web.Response()

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/reset", reset)
    app.router.add_get("/slow", slow)
    return app


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*REPLAYDIFF, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("processes", ["1", "3"])
def test_every_target_gets_the_same_request_and_sessions_keep_order(tmp_path: Path, processes: str) -> None:
    exchanges = [_exchange(i, f"s{i % 5}", "POST" if i % 3 else "GET", body=b'{"n": %d}' % i) for i in range(40)]
    corpus = _corpus(tmp_path / "c.jsonl.zst", exchanges)
    seen: list[tuple[str, dict]] = []
    base_app, cand_app = _recording_app(seen), _recording_app(seen)
    base_app[NAME], cand_app[NAME] = "base", "cand"
    with serve(base_app) as base, serve(cand_app) as cand:
        result = _run("replay", corpus, "--baseline", base, "--candidate", cand, "--speed", "50",
                      "--candidate-header", "baggage: sd-routing-key=abc", "-o", tmp_path / "r.jsonl.zst",
                      "--processes", processes, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "replayed 40 exchanges" in result.stderr
    base_seen = [r for name, r in seen if name == "base"]
    cand_seen = [r for name, r in seen if name == "cand"]
    assert len(base_seen) == 80 and len(cand_seen) == 40  # baseline and baseline2 share the URL
    for request in base_seen + cand_seen:
        assert request["host"] == "shop.internal"
        assert request["dup"] == ["1", "2"]
    assert all(r["routing"] == "sd-routing-key=abc" for r in cand_seen)
    assert not any(r["routing"] for r in base_seen)
    original = {f"/echo?i={i}&tag=a&tag=b": e for i, e in enumerate(exchanges)}
    for request in cand_seen:
        assert request["body"] == original[request["path"]].request.body
        assert request["method"] == original[request["path"]].request.method
    for session in {e.session for e in exchanges}:
        order = [int(r["path"].split("i=")[1].split("&")[0]) for r in cand_seen if r["session"] == session]
        assert order == sorted(order)
    reader = ResultsReader(tmp_path / "r.jsonl.zst")
    records = list(reader)
    assert len(records) == 120 and reader.complete and reader.end["completed"] == 40
    assert not list(tmp_path.glob(".replaydiff-parts-*"))  # the processes' parts are merged and gone
    assert {r.target for r in records} == {"baseline", "baseline2", "candidate"}
    assert all(r.response and r.response.status == 200 for r in records)
    assert all(r.endpoint in ("GET /echo", "POST /echo") for r in records)


def test_target_failures_are_outcomes_not_crashes(tmp_path: Path) -> None:
    exchanges = [_exchange(0, "a", path="/reset"), _exchange(1, "b", path="/slow"), _exchange(2, "c")]
    corpus = _corpus(tmp_path / "c.jsonl.zst", exchanges)
    seen: list[tuple[str, dict]] = []
    app = _recording_app(seen)
    app[NAME] = "any"
    with serve(app) as url:
        result = _run("replay", corpus, "--baseline", url, "--candidate", url, "--timeout", "0.5",
                      "--concurrency", "3", "-o", tmp_path / "r.jsonl.zst", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    by_path: dict[str, set[str | None]] = {}
    for record in ResultsReader(tmp_path / "r.jsonl.zst"):
        final = record.final
        assert final is not None
        by_path.setdefault(record.exchange_id, set()).add(final.error)
    assert by_path == {"x0": {"reset"}, "x1": {"timeout"}, "x2": {None}}


def test_unreachable_target_is_one_line_exit_2(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "c.jsonl.zst", [_exchange(0, "a")])
    seen: list[tuple[str, dict]] = []
    app = _recording_app(seen)
    app[NAME] = "base"
    with serve(app) as url:
        result = _run("replay", corpus, "--baseline", url, "--candidate", "http://127.0.0.1:9", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "candidate http://127.0.0.1:9 is unreachable" in result.stderr
    assert not seen  # nothing was sent anywhere


def test_writes_to_a_non_allowed_host_are_refused_before_sending(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "c.jsonl.zst", [_exchange(0, "a", "POST")])
    result = _run("replay", corpus, "--baseline", "http://127.0.0.1:9", "--candidate",
                  "http://sandbox.example.invalid", cwd=tmp_path)
    assert result.returncode == 2
    assert "--allow-host sandbox.example.invalid" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl.zst"], "no such file"),
        (["notes.txt"], "not a zstd-compressed replaydiff file"),
    ],
)
def test_bad_corpus_is_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    result = _run("replay", *args, "--baseline", "http://127.0.0.1:9", "--candidate", "http://127.0.0.1:9",
                  cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["replay", "run", "fuzz", "diff"])
def test_a_ca_bundle_that_is_not_one_is_one_line_exit_2(tmp_path: Path, command: str) -> None:
    """Checked before anything starts: it was a traceback from the replay's first TLS context."""
    corpus = _corpus(tmp_path / "c.jsonl.zst", [_exchange(0, "a")])
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    targets = [] if command == "diff" else ["--baseline", "https://127.0.0.1:9", "--candidate", "https://127.0.0.1:9"]
    result = _run(command, corpus, *targets, "--ca-cert", tmp_path / "ca.pem", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--ca-cert" in result.stderr and "not a readable PEM bundle of CA certificates" in result.stderr


IGNORING_SIGINT = ["sh", "-c", 'trap "" INT; exec "$@"', "sh"]
"""As a job started with `&` from a script runs: SIGINT ignored from the start (and by asyncio, then)."""


@pytest.mark.parametrize("processes", ["1", "2"])
@pytest.mark.parametrize(
    ("stop", "launcher"),
    [(signal.SIGINT, []), (signal.SIGTERM, []), (signal.SIGTERM, IGNORING_SIGINT)],
    ids=["ctrl-c", "sigterm", "sigterm-to-a-background-job"],
)
def test_ctrl_c_leaves_a_valid_results_file(
    tmp_path: Path, processes: str, stop: signal.Signals, launcher: list[str]
) -> None:
    """Ctrl-C, or SIGTERM as `timeout`, a CI job's cancel or a container's stop sends it: the same clean end."""
    exchanges = [_exchange(i, f"s{i % 4}") for i in range(400)]
    for i, exchange in enumerate(exchanges):
        exchange.start_us = i * 20_000  # 8 s of traffic at speed 1
    corpus = _corpus(tmp_path / "c.jsonl.zst", exchanges)
    seen: list[tuple[str, dict]] = []
    app = _recording_app(seen)
    app[NAME] = "any"
    with serve(app) as url:
        proc = subprocess.Popen(
            [*launcher, *REPLAYDIFF, "replay", str(corpus), "--baseline", url, "--candidate", url, "-o",
             "r.jsonl.zst", "--processes", processes],
            cwd=tmp_path, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_until(lambda: len(seen) >= 150, "the replay to be well under way (50 exchanges sent to 3 targets)")
        proc.send_signal(stop)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    reader = ResultsReader(tmp_path / "r.jsonl.zst")
    records = list(reader)
    assert reader.complete and reader.end["interrupted"] is True
    assert 30 <= len(records) < 1200


@pytest.mark.parametrize("engine", [["--processes", "1"], ["--processes", "2"], ["--engine", "locust"]],
                         ids=["asyncio", "processes", "locust"])
def test_a_replay_falling_behind_says_so_while_it_runs(tmp_path: Path, engine: list[str]) -> None:
    """600 sessions of 4 requests, all recorded at one instant, against a target that takes 0.3 s to answer:
    every 0.3 s all sessions' next requests are due together, 1,800 sends at once, which no machine makes
    within 5 ms, for at least 1.2 s. Every engine says so while it runs (`of the last N requests`), not only at
    the end."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/echo", slow)
    exchanges = [replace(_exchange(i, f"s{i % 600}"), start_us=0) for i in range(2400)]
    corpus = _corpus(tmp_path / "c.jsonl.zst", exchanges)
    with serve(app) as url:
        result = _run("replay", corpus, "--baseline", url, "--candidate", url, "-o", tmp_path / "r.jsonl.zst",
                      *engine, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    live = [line for line in result.stderr.splitlines() if "behind schedule:" in line and "of the last" in line]
    assert live, result.stderr
    results = ResultsReader(tmp_path / "r.jsonl.zst")
    assert len(list(results)) == 3 * 2400  # baseline, baseline2, candidate; the end record is read last
    late = results.end["late"]
    assert late >= 600 and f"{late} of 2400 requests" in " ".join(result.stderr.split())  # and at the end


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0,
                    reason="raising a priority and holding PM QoS take root on Linux")
@pytest.mark.parametrize("timed", [True, False], ids=["recorded timing", "closed loop"])
def test_a_timed_replay_asks_for_prompt_wakeups_while_it_runs(tmp_path: Path, timed: bool) -> None:
    """While a replay keeps a schedule, its process runs at `LOOP_NICENESS` and holds the PM QoS request (as the
    target sees it while it answers); a closed-loop replay keeps no schedule and asks for neither."""
    from replaydiff.replaying import LOOP_NICENESS, PM_QOS_DEVICE

    replay: list[subprocess.Popen[str]] = []
    seen: list[tuple[int, int]] = []

    async def observe(request: web.Request) -> web.Response:
        pid = replay[0].pid
        seen.append((os.getpriority(os.PRIO_PROCESS, pid), struct.unpack("i", PM_QOS_DEVICE.read_bytes()[:4])[0]))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/echo", observe)
    corpus = _corpus(tmp_path / "c.jsonl.zst", [_exchange(i, f"s{i % 5}") for i in range(20)])
    mode = [] if timed else ["--concurrency", "4"]
    with serve(app) as url:
        replay.append(subprocess.Popen(
            [*REPLAYDIFF, "replay", str(corpus), "--baseline", url, "--candidate", url, "-o", str(tmp_path / "r.jsonl.zst"),
             *mode], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))  # fmt: skip
        _, stderr = replay[0].communicate(timeout=120)
    assert replay[0].returncode == 0, stderr
    assert len(seen) == 60
    if timed:
        assert {niceness for niceness, _ in seen} == {LOOP_NICENESS} and {qos for _, qos in seen} == {0}
    else:
        assert {niceness for niceness, _ in seen} == {0}
