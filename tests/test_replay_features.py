"""Replay modes, tracing, sandboxes, retries and stateful sessions, against real local servers."""

from __future__ import annotations

import hashlib

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from replaydiff.corpora import CorpusWriter, Exchange, Request, Response, ResultsReader
from replaydiff.corpora.trace import exchange_key
from replaydiff.replayer.correlate import load_carry_rules
from tests.servers import raw_server, serve

REPLAYDIFF = [sys.executable, "-m", "replaydiff.cli"]
SEEN = web.AppKey("seen", list)


def _exchange(i: int, session: str, path: str, *, method: str = "GET", start_us: int | None = None,
              duration_us: int = 1000, body: bytes = b"", response: Response | None = None) -> Exchange:
    return Exchange(
        id=f"x{i}", session=session, start_us=i * 1000 if start_us is None else start_us, duration_us=duration_us,
        request=Request(method, "http", "svc", 80, path.split("?")[0], query=path.partition("?")[2],
                        headers=[("Host", "svc"), ("Content-Type", "application/json")], body=body),
        response=response or Response(200, body=b"{}"),
    )


def _corpus(tmp_path: Path, exchanges: list[Exchange]) -> Path:
    path = tmp_path / "c.jsonl.zst"
    with CorpusWriter(path, source="test") as writer:
        for exchange in exchanges:
            writer.write(exchange)
    return path


def _replay(tmp_path: Path, corpus: Path, base: str, cand: str, *args: str) -> list:
    result = subprocess.run(
        [*REPLAYDIFF, "replay", str(corpus), "--baseline", base, "--candidate", cand,
         "-o", str(tmp_path / "r.jsonl.zst"), *args],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return list(ResultsReader(tmp_path / "r.jsonl.zst"))


def _app() -> web.Application:
    """Records every request; /flaky fails its first call per trace; /things is a tiny stateful store."""
    seen: list[dict] = []
    things: dict[str, dict] = {}
    calls: Counter[str] = Counter()

    async def record(request: web.Request) -> None:
        seen.append({"path": request.path_qs, "method": request.method, "headers": dict(request.headers),
                     "at": time.monotonic()})

    async def any_path(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"ok": True})

    async def flaky(request: web.Request) -> web.Response:
        await record(request)
        trace = request.headers["traceparent"].split("-")[1]
        calls[trace] += 1
        return web.json_response({"try": calls[trace]}, status=503 if calls[trace] == 1 else 200)

    async def create(request: web.Request) -> web.Response:
        await record(request)
        thing_id = f"t-{uuid.uuid4().hex[:12]}"
        things[thing_id] = await request.json()
        return web.json_response({"id": thing_id}, status=201, headers={"Location": f"/things/{thing_id}"})

    async def read(request: web.Request) -> web.Response:
        await record(request)
        thing = things.get(request.match_info["id"])
        return web.json_response(thing, status=200) if thing else web.json_response({"error": "no"}, status=404)

    app = web.Application()
    app[SEEN] = seen
    app.router.add_post("/things", create)
    app.router.add_get("/things/{id}", read)
    app.router.add_get("/flaky", flaky)
    app.router.add_route("*", "/{tail:.*}", any_path)
    return app


def test_rate_filter_and_loop_select_and_repeat(tmp_path: Path) -> None:
    exchanges = [_exchange(i, f"s{i % 3}", f"/a/{i}" if i % 2 else f"/b/{i}") for i in range(20)]
    corpus = _corpus(tmp_path, exchanges)
    app = _app()
    with serve(app) as url:
        records = _replay(tmp_path, corpus, url, url, "--rate", "200", "--filter", "/a/*", "--loop", "3")
    ids = {r.exchange_id for r in records}
    assert len(ids) == 30  # 10 matching × 3 loops, each pass with distinct ids
    assert {i.split("~")[0] for i in ids} == {f"x{i}" for i in range(1, 20, 2)}
    assert all(r.endpoint == "GET /a/{id}" for r in records)


def test_think_time_is_kept_within_a_session(tmp_path: Path) -> None:
    # recorded: request 1 ends at 10 ms; the user thought 400 ms before request 2
    exchanges = [
        _exchange(0, "s", "/one", start_us=0, duration_us=10_000),
        _exchange(1, "s", "/two", start_us=410_000),
    ]
    app = _app()
    with serve(app) as url:
        _replay(tmp_path, _corpus(tmp_path, exchanges), url, url)
    times = {r["path"]: r["at"] for r in app[SEEN]}
    assert times["/two"] - times["/one"] >= 0.38


def test_each_target_gets_its_own_traceparent_and_the_candidate_the_routing_key(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path, [_exchange(i, "s", f"/p/{i}") for i in range(5)])
    base_app, cand_app = _app(), _app()
    with serve(base_app) as base, serve(cand_app) as cand:
        records = _replay(tmp_path, corpus, base, cand, "--routing-key", "sbx-42", "--host-header", "api.test")
    trace_ids = [r.trace_id for r in records]
    assert len(set(trace_ids)) == 15 and all(len(t) == 32 for t in trace_ids)
    sent = [s["headers"]["traceparent"].split("-")[1] for s in base_app[SEEN] + cand_app[SEEN]]
    assert sorted(sent) == sorted(trace_ids)
    by_exchange: dict[str, set[str]] = {}
    for record in records:
        by_exchange.setdefault(record.exchange_id, set()).add(exchange_key(record.trace_id))
    assert all(len(keys) == 1 for keys in by_exchange.values())  # one exchange, one key, whatever the target
    assert len({keys.pop() for keys in by_exchange.values()}) == 5
    assert all(s["headers"]["baggage"] == "sd-routing-key=sbx-42" for s in cand_app[SEEN])
    assert all(s["headers"]["tracestate"] == "sd-routing-key=sbx-42" for s in cand_app[SEEN])
    assert not any("baggage" in s["headers"] for s in base_app[SEEN])
    assert all(s["headers"]["Host"] == "api.test" for s in base_app[SEEN] + cand_app[SEEN])


def test_retries_record_every_attempt(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path, [_exchange(0, "s", "/flaky")])
    app = _app()
    with serve(app) as url:
        records = _replay(tmp_path, corpus, url, url, "--retries", "2", "--retry-on", "503")
    for record in records:
        assert [a.status for a in record.attempts] == [503, 200]
        assert record.response is not None and record.response.status == 200
        assert len({a.span_id for a in record.attempts}) == 2
    with serve(_app()) as url:
        records = _replay(tmp_path, corpus, url, url)
    assert all([a.status for a in r.attempts] == [503] for r in records)


def test_ids_returned_by_each_target_replace_recorded_ones(tmp_path: Path) -> None:
    recorded_id = "t-0123456789ab"
    exchanges = [
        _exchange(0, "s", "/things", method="POST", body=b'{"name": "lamp"}',
                  response=Response(201, headers=[("Location", f"/things/{recorded_id}")],
                                    body=json.dumps({"id": recorded_id}).encode())),
        _exchange(1, "s", f"/things/{recorded_id}", start_us=5000,
                  response=Response(200, body=b'{"name": "lamp"}')),
    ]
    corpus = _corpus(tmp_path, exchanges)
    with serve(_app()) as base, serve(_app()) as cand:
        correlated = _replay(tmp_path, corpus, base, cand)
        plain = _replay(tmp_path, corpus, base, cand, "--no-correlate")
    reads = [r for r in correlated if r.exchange_id == "x1"]
    assert [r.response.status for r in reads if r.response] == [200, 200, 200]
    assert all(json.loads(r.response.body) == {"name": "lamp"} for r in reads if r.response)
    assert [r.response.status for r in plain if r.exchange_id == "x1" and r.response] == [404, 404, 404]


def test_garbage_and_huge_answers_are_outcomes(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path, [_exchange(0, "s", "/x")])
    huge = b"HTTP/1.1 200 OK\r\nContent-Length: 12000000\r\n\r\n" + b"a" * 12_000_000
    with raw_server(b"SSH-2.0-OpenSSH_9.0\r\n\r\n") as garbage, raw_server(huge) as big:
        records = _replay(tmp_path, corpus, garbage, big)
    by_target = {r.target: r for r in records}
    assert by_target["baseline"].attempts[0].error == "protocol"
    candidate = by_target["candidate"]
    assert candidate.response is not None and len(candidate.response.body) == 64 * 1024  # a prefix and a digest
    assert candidate.response.body_size == 12_000_000
    assert candidate.response.body_digest == "sha256:" + hashlib.sha256(b"a" * 12_000_000).hexdigest()
    assert "above" in (candidate.attempts[0].error_detail or "")


def test_a_candidate_changing_a_value_the_baseline_kept_is_not_carried_forward() -> None:
    from replaydiff.replayer.correlate import SessionCorrelator

    recorded = _exchange(0, "s", "/top", response=Response(200, body=b'{"top": 1234, "id": "rec-0000000001"}'))
    later = _exchange(1, "s", "/products/1234")
    correlator = SessionCorrelator()
    correlator.observe(recorded, {
        "baseline": Response(200, body=b'{"top": 1234, "id": "live-base-000001"}'),
        "baseline2": Response(200, body=b'{"top": 1234, "id": "live-base-000002"}'),
        "candidate": Response(200, body=b'{"top": 1235, "id": "live-cand-000001"}'),  # a candidate bug, not an id
    })
    assert correlator.rewrite(later.request, "candidate").request.path == "/products/1234"
    created = _exchange(2, "s", "/orders/rec-0000000001")
    assert correlator.rewrite(created.request, "candidate").request.path == "/orders/live-cand-000001"
    assert correlator.rewrite(created.request, "baseline2").request.path == "/orders/live-base-000002"


def test_correlation_rules_carry_values_the_guard_leaves(tmp_path: Path) -> None:
    """A two-character code is too short to carry unasked (the guard), so only a rule carries it."""
    codes = iter(f"c{i}" for i in range(100))
    seen: list[str] = []

    async def login(request: web.Request) -> web.Response:
        return web.json_response({"session": {"code": next(codes)}})

    async def whoami(request: web.Request) -> web.Response:
        seen.append(request.headers.get("X-Code", ""))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/login", login)
    app.router.add_get("/me", whoami)
    exchanges = [
        _exchange(0, "s", "/login", method="POST", response=Response(200, body=b'{"session": {"code": "rc"}}')),
        _exchange(1, "s", "/me", start_us=5000),
    ]
    exchanges[1].request.headers.append(("X-Code", "rc"))
    corpus = _corpus(tmp_path, exchanges)
    rules = tmp_path / "carry.toml"
    rules.write_text('[[carry]]\njson = "$.session.code"\n')
    with serve(app) as url:
        _replay(tmp_path, corpus, url, url)
        assert seen == ["rc"] * 3
        seen.clear()
        _replay(tmp_path, corpus, url, url, "--correlation-rules", str(rules))
    assert sorted(seen) != ["rc"] * 3 and all(code.startswith("c") for code in seen)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ('path = "$.x"', "needs exactly one of json"),
        ('json = "$.a[x].b"', "JSON path '$.a[x].b' is not understood at '[x].b'"),  # once silently read as $.a.b
        ('json = "$..id"', "must name exact places"),
    ],
)
def test_a_bad_correlation_rules_file_is_one_line(tmp_path: Path, rule: str, message: str) -> None:
    rules = tmp_path / "carry.toml"
    rules.write_text(f"[[carry]]\n{rule}\n")
    corpus = _corpus(tmp_path, [_exchange(0, "s", "/x")])
    result = subprocess.run(
        [*REPLAYDIFF, "replay", str(corpus), "--baseline", "http://127.0.0.1:9", "--candidate", "http://127.0.0.1:9",
         "--correlation-rules", str(rules)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and message in result.stderr and str(rules) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_correlation_rule_paths_parse_in_the_one_dialect(tmp_path: Path) -> None:
    rules = tmp_path / "carry.toml"
    rules.write_text('[[carry]]\njson = "$.items[*].id"\n[[carry]]\njson = "$[\'odd key\'][2]"\n')
    assert load_carry_rules(rules).json_paths == (("items", "*", "id"), ("odd key", 2))
