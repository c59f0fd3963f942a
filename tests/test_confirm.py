"""Confirmation resends against real servers: a rare divergence becomes confirmed, noise or flaky."""

from __future__ import annotations

import json
import os
import random
import ssl
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

from replaydiff.confirming import judge
from replaydiff.corpora import CorpusWriter, Exchange, Request, Response
from replaydiff.diff import Rules
from replaydiff.fuzz.sender import Answers
from tests.servers import self_signed_certificate, serve
from tests.test_diff import doc

REPLAYDIFF = [sys.executable, "-m", "replaydiff.cli"]


def app(candidate: bool) -> web.Application:
    """Per-process state: how often each path was answered, which is what makes a one-off difference."""
    calls: Counter[str] = Counter()

    async def answer(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        calls[kind] += 1
        first = calls[kind] == 1
        if kind == "real":
            body: dict[str, Any] = {"v": 2 if candidate else 1}
        elif kind == "flaky":
            body = {"v": 2 if candidate and first else 1}  # the candidate differed once, at its first call
        elif kind == "state":  # the baselines agreed at the first call; afterwards every answer is its own
            body = {"s": (9 if candidate else 0) if first else random.random()}
        else:
            body = {"v": request.match_info["n"]}
        return web.json_response(body)

    async def write(request: web.Request) -> web.Response:
        calls["write"] += 1
        return web.json_response({"ok": not (candidate and calls["write"] == 1)})

    application = web.Application()
    application.router.add_get("/{kind}/{n}", answer)
    application.router.add_post("/write", write)
    return application


def corpus(path: Path, *, mutating: bool = True) -> Path:
    targets = [f"/items/{n}" for n in range(30)] + ["/real/1", "/real/2", "/flaky/1", "/state/1"]
    with CorpusWriter(path, source="test") as writer:
        for number, target in enumerate(targets + (["/write"] if mutating else [])):
            method = "POST" if target == "/write" else "GET"
            request = Request(method, "http", "127.0.0.1", 80, target, headers=[("Host", "svc")])
            writer.write(Exchange(f"e{number:02d}", "s", number * 1000, request, Response(200), 1000))
    return path


def run(
    tmp_path: Path, recorded: Path, *extra: str, tls: ssl.SSLContext | None = None
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`tls`: the three servers speak https with this context."""
    report = tmp_path / "report.json"
    with serve(app(False), tls) as baseline, serve(app(False), tls) as baseline2, serve(app(True), tls) as candidate:
        result = subprocess.run(
            [*REPLAYDIFF, "run", str(recorded), "--baseline", baseline, "--baseline2", baseline2,
             "--candidate", candidate, "--concurrency", "4", "-o", str(tmp_path / "r.jsonl.zst"),
             "--json", str(report), *extra],
            capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
    return result, json.loads(report.read_text()) if report.exists() else {}


def test_run_resends_rare_divergences_and_tells_change_from_noise_and_fluke(tmp_path: Path) -> None:
    result, report = run(tmp_path, corpus(tmp_path / "c.jsonl.zst"))
    assert result.returncode == 1, result.stdout + result.stderr  # the confirmed change and the write still fail
    assert report["confirm_times"] == 3
    assert report["confirmations"] == {
        "GET /real/{id}|body|$.v": "confirmed",
        "GET /flaky/{id}|body|$.v": "flaky",
        "GET /state/{id}|body|$.s": "noise",
    }
    fingerprints = {d["fingerprint"] for d in report["divergences"]}
    assert "GET /state/{id}|body|$.s" not in fingerprints  # the baselines differed on resend: noise
    [noise] = [s for s in report["suppressed"] if s["endpoint"] == "GET /state/{id}"]
    assert noise["resent"] >= 1
    assert "POST /write|body|$.ok" in fingerprints  # never resent: a write is not repeated to find out
    titles = {f["title"]: f["confirmation"] for f in report["findings"]}
    assert titles["`$.v` changed on GET /flaky/{id}"] == "flaky"
    assert titles["`$.v` changed on GET /real/{id}"] == "confirmed"
    assert titles["`$.ok` changed on POST /write"] is None
    assert "1 confirmed, 1 noise (suppressed), 1 flaky (does not fail the run)" in result.stdout
    assert "[flaky]" in result.stdout


def test_resends_reach_https_targets_trusting_the_ca_the_replay_trusts(tmp_path: Path) -> None:
    certificate, key = self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    result, report = run(tmp_path, corpus(tmp_path / "c.jsonl.zst", mutating=False), "--ca-cert", str(certificate),
                         tls=context)  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert report["confirmations"] == {
        "GET /real/{id}|body|$.v": "confirmed",
        "GET /flaky/{id}|body|$.v": "flaky",
        "GET /state/{id}|body|$.s": "noise",
    }


def test_a_flaky_divergence_alone_does_not_fail_the_run_and_without_resends_it_does(tmp_path: Path) -> None:
    recorded = corpus(tmp_path / "c.jsonl.zst", mutating=False)
    unconfirmed, report = run(tmp_path, recorded, "--confirm", "0")
    assert unconfirmed.returncode == 1 and "GET /flaky/{id}|body|$.v" in {d["fingerprint"] for d in report["divergences"]}
    assert report["confirmations"] == {} and report["confirm_times"] == 0
    confirmed, report = run(tmp_path, recorded, "--fail-on", "body", "--confirm", "2")
    assert {d["fingerprint"] for d in report["divergences"]} >= {"GET /flaky/{id}|body|$.v", "GET /real/{id}|body|$.v"}
    assert confirmed.returncode == 1  # /real is confirmed


def answers(baseline: Any, baseline2: Any, candidate: Any) -> Answers:
    return Answers(doc(baseline, "baseline"), doc(baseline2, "baseline2"), doc(candidate, "candidate"))


def test_the_verdict_rule() -> None:
    key = ("body", "$.v")
    rules, endpoint = Rules(), "GET /items/{id}"
    assert judge(key, 200, [answers({"v": 1}, {"v": 1}, {"v": 2})] * 3, rules, endpoint).verdict == "confirmed"
    assert judge(key, 200, [answers({"v": 1}, {"v": 3}, {"v": 2})], rules, endpoint).verdict == "noise"
    assert judge(key, 200, [answers({"v": 1}, {"v": 1}, {"v": 1})] * 3, rules, endpoint).verdict == "flaky"
    sometimes = [answers({"v": 1}, {"v": 1}, {"v": 2}), answers({"v": 1}, {"v": 1}, {"v": 1})]
    assert judge(key, 200, sometimes, rules, endpoint).verdict == "flaky"  # state that comes and goes
    # the baseline answered another status than during the replay: the resend cannot be judged
    assert judge(key, 404, [answers({"v": 1}, {"v": 1}, {"v": 1})], rules, endpoint).verdict is None


def test_diff_confirm_without_the_corpus_is_one_line_exit_2(tmp_path: Path) -> None:
    from tests.test_diff_cli import write_results

    results = write_results(tmp_path / "r.jsonl.zst", exchanges=4, planted=True)  # its header names corpus "shop"
    result = subprocess.run([*REPLAYDIFF, "diff", str(results), "--confirm", "2"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)  # fmt: skip
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "--confirm needs the replayed corpus, but 'shop' is not a file" in result.stderr
