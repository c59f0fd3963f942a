"""`replaydiff corpus …`: statistics, sampling, deduplication, minimization, merge, split, filter, bad input.

Real corpus files, the real command line in subprocesses, a real server for `replay --weighted`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replaydiff.corpora import CorpusReader, CorpusWriter, Exchange, Request, Response
from replaydiff.corpora.weights import weight_of, with_weights_expanded
from replaydiff.curation.coverage import scan_exchanges
from replaydiff.curation.minimize import choose
from replaydiff.curation.shapes import body_shape
from tests.servers import serve

REPLAYDIFF = [sys.executable, "-m", "replaydiff.cli"]
SHAPES = [b"", b'{"id": 1}', b'{"id": 1, "name": "a"}', b'{"items": [{"sku": "x"}]}', b"<html></html>"]


def _exchange(number: int, session: str, method: str = "GET", path: str = "/api/items", *, query: str = "",
              body: bytes = b"", status: int = 200, answer: bytes = b'{"ok": true}',
              headers: list[tuple[str, str]] | None = None) -> Exchange:  # fmt: skip
    return Exchange(
        id=f"x{number}",
        session=session,
        start_us=number * 1000,
        duration_us=500,
        request=Request(method, "http", "shop.internal", 80, path, query=query,
                        headers=[("Host", "shop.internal"), *(headers or [])], body=body),  # fmt: skip
        response=Response(status, headers=[("Content-Type", "application/json")], body=answer),
    )


def _write(path: Path, exchanges: list[Exchange], *, frame_per_record: bool = False) -> Path:
    with CorpusWriter(path, source="test", flush_interval=0 if frame_per_record else 1.0) as writer:
        for exchange in exchanges:
            writer.write(exchange)
    return path


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*REPLAYDIFF, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd)


def _shop(path: Path, sessions: int = 60, *, frame_per_record: bool = False) -> Path:
    """Sessions of a few kinds, most of them alike; a rare header, a rare coupon and a rare 404 in one each."""
    exchanges: list[Exchange] = []
    number = 0
    for s in range(sessions):
        key = f"client-{s}"
        steps = [("GET", "/api/items", "page=1", b"", 200), ("GET", f"/api/items/{s % 7 + 1}", "", b"", 200)]
        if s % 3 == 0:
            steps.append(("POST", "/api/cart", "", orjson.dumps({"coupon": "SPRING" if s != 30 else "XL"}), 200))
        if s == 17:
            steps.append(("GET", "/api/items/999", "", b"", 404))
        for method, target, query, body, status in steps:
            number += 1
            headers = [("X-Debug", "1")] if s == 44 else []
            exchanges.append(_exchange(number, key, method, target, query=query, body=body, status=status,
                                       headers=headers))  # fmt: skip
    return _write(path, exchanges, frame_per_record=frame_per_record)


def _sessions(path: Path) -> dict[str, list[str]]:
    sessions: dict[str, list[str]] = {}
    for exchange in CorpusReader(path):
        sessions.setdefault(exchange.session, []).append(exchange.id)
    return sessions


def test_stats_shows_endpoints_shapes_and_coverage(tmp_path: Path) -> None:
    corpus = _shop(tmp_path / "shop.jsonl.zst")
    result = _cli("corpus", "stats", corpus, "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["exchanges"] == 60 * 2 + 20 + 1 and stats["sessions"] == 60
    assert set(stats["endpoints"]) == {"GET /api/items", "GET /api/items/{id}", "POST /api/cart"}
    cart = stats["endpoints"]["POST /api/cart"]
    assert cart["request_shapes"] == {"query[] body {$.coupon:string,$:object}": 20}
    assert stats["endpoints"]["GET /api/items"]["query_keys"] == {"page": 60}
    assert stats["endpoints"]["GET /api/items/{id}"]["statuses"] == {"200": 60, "404": 1}
    assert stats["coverage"]["by_kind"]["value"] >= 2  # SPRING and XL, and page=1
    text = _cli("corpus", "stats", corpus)
    assert text.returncode == 0 and "coverage" in text.stdout and "POST /api/cart" in text.stdout
    part = _write(tmp_path / "part.jsonl.zst", [e for e in CorpusReader(corpus) if e.session != "client-30"])
    against = _cli("corpus", "stats", part, "--against", corpus, "--json")
    assert against.returncode == 0, against.stderr
    report = json.loads(against.stdout)["against"]
    assert report["missing"] == ['value POST /api/cart $.coupon="XL"'] and report["kept"] == report["items"] - 1
    text = _cli("corpus", "stats", part, "--against", corpus, "--shapes", "0").stdout
    assert f"of {report['items']} items" in text and 'missing: value POST /api/cart $.coupon="XL"' in text


def test_minimize_keeps_every_coverage_item_in_whole_sessions(tmp_path: Path) -> None:
    corpus = _shop(tmp_path / "shop.jsonl.zst")
    out = tmp_path / "min.jsonl.zst"
    result = _cli("corpus", "minimize", corpus, "-o", out, "--latency-samples", "0")
    assert result.returncode == 0, result.stderr
    assert "(100.0%)" in result.stdout and "fewer" in result.stdout
    full, kept = _sessions(corpus), _sessions(out)
    assert all(kept[key] == full[key] for key in kept)  # whole sessions, in order
    assert {"client-17", "client-30", "client-44"} <= kept.keys()  # the 404, the rare coupon, the rare header
    assert len(kept) < 10
    header = CorpusReader(out).header["curation"]
    assert header["coverage"]["items"] == header["coverage"]["kept"]
    # with latency samples, every endpoint gets its 30 exchanges where the corpus has them
    result = _cli("corpus", "minimize", corpus, "-o", out)
    counts = Counter(e.request.method + " " + e.request.path.rsplit("/", 1)[0] for e in CorpusReader(out))
    assert result.returncode == 0 and counts["GET /api"] >= 30 and counts["POST /api"] == 20


sessions_strategy = st.lists(
    st.lists(st.tuples(st.sampled_from(["GET", "POST"]), st.sampled_from(["/a", "/b/1", "/c"]),
                       st.sampled_from(SHAPES), st.sampled_from([200, 201, 404, 500])), min_size=1, max_size=6),
    min_size=1, max_size=25,
)  # fmt: skip


def _from_plan(plan: list[list[tuple[str, str, bytes, int]]]) -> list[Exchange]:
    exchanges = []
    for s, steps in enumerate(plan):
        for method, path, body, status in steps:
            exchanges.append(_exchange(len(exchanges), f"s{s}", method, path, body=body, status=status, answer=body))
    return exchanges


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=sessions_strategy, samples=st.integers(0, 8), budget=st.one_of(st.none(), st.integers(1, 40)))
def test_the_cover_keeps_every_item_and_the_latency_floor_or_says_what_it_dropped(
    plan: list[list[tuple[str, str, bytes, int]]], samples: int, budget: int | None
) -> None:
    coverage = scan_exchanges(_from_plan(plan))
    cover = choose(coverage, latency_samples=samples, max_exchanges=budget)
    kept_items: set[int] = set()
    for index in cover.chosen:
        kept_items |= coverage.sessions[index].items
    assert len(set(cover.chosen)) == len(cover.chosen)
    assert cover.exchanges == sum(coverage.sessions[i].exchanges for i in cover.chosen)
    universe = coverage.items()
    assert set(cover.missing_items) == universe - kept_items and cover.items_kept == len(universe & kept_items)
    if budget is None:
        assert not cover.missing_items and not cover.short_endpoints
    else:
        assert cover.exchanges <= budget
        if choose(coverage, latency_samples=0).exchanges <= budget:
            assert not cover.missing_items  # items come first within a budget that can hold them


def test_sample_keeps_whole_sessions_and_repeats_with_its_seed(tmp_path: Path) -> None:
    corpus = _shop(tmp_path / "shop.jsonl.zst")
    full = _sessions(corpus)
    chosen = []
    for name, args in [("a", ["--rate", "0.25"]), ("b", ["--rate", "0.25"]), ("c", ["--rate", "0.25", "--seed", "9"])]:
        out = tmp_path / f"{name}.jsonl.zst"
        assert _cli("corpus", "sample", corpus, "-o", out, *args).returncode == 0
        kept = _sessions(out)
        assert kept and all(kept[key] == full[key] for key in kept)
        chosen.append(set(kept))
    assert chosen[0] == chosen[1] != chosen[2]
    out = tmp_path / "n.jsonl.zst"
    result = _cli("corpus", "sample", corpus, "-o", out, "--sessions", "7")
    assert result.returncode == 0 and len(_sessions(out)) == 7, result.stderr
    result = _cli("corpus", "sample", corpus, "-o", out, "--per-endpoint", "5")
    counts = Counter(e.request.method for e in CorpusReader(out))
    assert result.returncode == 0 and counts["POST"] >= 5 and len(_sessions(out)) < 60
    both = _cli("corpus", "sample", corpus, "-o", out, "--rate", "0.1", "--sessions", "3")
    assert both.returncode == 2 and "exactly one of" in both.stderr and "Traceback" not in both.stderr


def test_dedup_weights_add_up_and_weighted_replay_sends_them_as_counts(tmp_path: Path) -> None:
    corpus = _shop(tmp_path / "shop.jsonl.zst")
    out = tmp_path / "dedup.jsonl.zst"
    result = _cli("corpus", "dedup", corpus, "-o", out)
    assert result.returncode == 0, result.stderr
    kept = list(CorpusReader(out))
    assert sum(weight_of(e) for e in kept) == 141 and len(kept) < 60
    listing = [e for e in kept if e.request.path == "/api/items"]
    assert sorted(weight_of(e) for e in listing) == [1, 59]  # one GET for 59, and the one with a rare header
    assert sum(weight_of(e) for e in kept if e.request.method == "POST") == 20
    assert "collapsed" in result.stdout
    expanded = list(with_weights_expanded(kept))
    assert len(expanded) == 141 and len({e.id for e in expanded}) == 141

    seen: Counter[str] = Counter()

    async def handler(request: web.Request) -> web.Response:
        seen[request.match_info["tail"]] += 1
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    with serve(app) as base:
        for weighted in (False, True):
            seen.clear()
            replay = _cli("replay", out, "--baseline", base, "--candidate", base, "--concurrency", "8",
                          "-o", tmp_path / "r.jsonl.zst", *(["--weighted"] if weighted else []))  # fmt: skip
            assert replay.returncode == 0, replay.stderr
            assert sum(seen.values()) == 3 * (141 if weighted else len(kept))
    assert seen["api/items"] == 3 * 60


def test_merge_split_and_filter(tmp_path: Path) -> None:
    first = _shop(tmp_path / "a.jsonl.zst", sessions=6)
    second = _shop(tmp_path / "b.jsonl.zst", sessions=6)
    merged = tmp_path / "m.jsonl.zst"
    assert _cli("corpus", "merge", first, second, "-o", merged).returncode == 0
    exchanges = list(CorpusReader(merged))
    assert len(exchanges) == 2 * 14 and len({e.session for e in exchanges}) == 12
    starts = [e.start_us for e in exchanges]
    assert starts == sorted(starts)  # one after the other, so the replay's plan stays in time order
    overlay = tmp_path / "o.jsonl.zst"
    assert _cli("corpus", "merge", first, second, "-o", overlay, "--overlay").returncode == 0
    starts = [e.start_us for e in CorpusReader(overlay)]
    assert starts == sorted(starts) and max(starts) < max(e.start_us for e in exchanges)

    parts = tmp_path / "parts"
    result = _cli("corpus", "split", merged, "--by", "endpoint", "-o", parts)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in parts.iterdir()) == [
        "m.GET_api_items.jsonl.zst", "m.GET_api_items_{id}.jsonl.zst", "m.POST_api_cart.jsonl.zst"]  # fmt: skip
    result = _cli("corpus", "split", merged, "--by", "session", "--parts", "3", "-o", tmp_path / "s")
    files = list((tmp_path / "s").iterdir())
    per_file = [_sessions(f) for f in files]
    assert result.returncode == 0 and sum(len(p) for p in per_file) == 12
    assert all(p[key] == _sessions(merged)[key] for p in per_file for key in p)  # sessions whole
    result = _cli("corpus", "split", merged, "--by", "hour", "-o", tmp_path / "h")
    assert result.returncode == 0 and len(list((tmp_path / "h").iterdir())) == 1

    filtered = tmp_path / "f.jsonl.zst"
    result = _cli("corpus", "filter", merged, "-o", filtered, "--filter", "POST", "--filter", "GET /api/items/{id}")
    assert result.returncode == 0 and {e.request.method for e in CorpusReader(filtered)} == {"GET", "POST"}
    assert len(list(CorpusReader(filtered))) == 12 + 4


def test_bad_input_is_one_line_or_a_warning_never_a_traceback(tmp_path: Path) -> None:
    corpus = _shop(tmp_path / "shop.jsonl.zst", frame_per_record=True)  # a cut tail loses one record
    data = corpus.read_bytes()
    damaged = tmp_path / "damaged.jsonl.zst"
    damaged.write_bytes(data[: len(data) - 40])
    for command in (["stats"], ["minimize", "-o", tmp_path / "m.jsonl.zst"], ["dedup", "-o", tmp_path / "d.jsonl.zst"],
                    ["sample", "--rate", "0.5", "-o", tmp_path / "s.jsonl.zst"]):  # fmt: skip
        result = _cli("corpus", command[0], damaged, *command[1:])
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.count("warning:") == 1 and "kept the" in result.stderr

    no_sessions = _write(tmp_path / "flat.jsonl.zst", [_exchange(i, "", path=f"/p{i % 3}") for i in range(9)])
    result = _cli("corpus", "minimize", no_sessions, "-o", tmp_path / "m.jsonl.zst")
    assert result.returncode == 0 and "no session key" in result.stderr and "Traceback" not in result.stderr

    empty = _write(tmp_path / "empty.jsonl.zst", [])
    result = _cli("corpus", "minimize", empty, "-o", tmp_path / "m.jsonl.zst")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no exchange" in result.stderr

    result = _cli("corpus", "minimize", corpus, "-o", tmp_path / "m.jsonl.zst", "--max-exchanges", "1")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--max-exchanges" in result.stderr
    result = _cli("corpus", "minimize", corpus, "-o", tmp_path / "m.jsonl.zst", "--max-exchanges", "4")
    assert result.returncode == 0 and "dropped" in result.stderr and "Traceback" not in result.stderr
    assert "%)" in result.stdout and "(100.0%)" not in result.stdout

    result = _cli("corpus", "minimize", corpus, "-o", corpus)
    assert result.returncode == 2 and "overwrite" in result.stderr
    result = _cli("corpus", "stats", tmp_path / "missing.jsonl.zst")
    assert result.returncode == 2 and "no such file" in result.stderr


def test_body_shape_ignores_values_and_sees_fields() -> None:
    assert body_shape(b'{"id": 1, "tags": ["a"]}', None) == body_shape(b'{"tags": ["b", "c"], "id": 7}', None)
    assert body_shape(b'{"id": 1}', None) != body_shape(b'{"id": "1"}', None)
    assert body_shape(b"<p>", "text/html; charset=utf-8") == "text/html"
    assert body_shape(b"", None) == "empty"


def test_a_nightly_entry_curates_on_the_fly_and_reports_the_coverage(tmp_path: Path) -> None:
    _shop(tmp_path / "shop.jsonl.zst")

    async def handler(request: web.Request) -> web.Response:
        status = 404 if request.path.endswith("/999") else 200
        return web.json_response({"ok": True}, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    with serve(app) as base:
        suite = tmp_path / "suite.toml"
        suite.write_text(
            f'[replay]\nconcurrency = 4\n[targets.shop]\nbaseline = "{base}"\ncandidate = "{base}"\n'
            f'[[entry]]\ncorpus = "shop.jsonl.zst"\ntarget = "shop"\nminimize = 40\n'
        )
        result = _cli("nightly", suite, "--out", "night", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    entry = json.loads((tmp_path / "night" / "report.json").read_text())["entries"][0]
    coverage = entry["coverage"]
    assert coverage["job"] == "minimize" and coverage["exchanges_before"] == 141 and coverage["exchanges"] <= 40
    assert coverage["coverage"]["kept"] == coverage["coverage"]["items"]
    assert "coverage items (100%)" in result.stdout
    assert "coverage items (100%)" in (tmp_path / "night" / "report.html").read_text()
    suite.write_text(suite.read_text().replace("minimize = 40", "minimize = 0"))
    bad = _cli("nightly", suite, "--out", "night2", cwd=tmp_path)
    assert bad.returncode == 2 and "`minimize` must be a positive number" in bad.stderr


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(plan=sessions_strategy)
def test_dedup_keeps_every_request_counted_and_every_state_change_in_place(
    tmp_path: Path, plan: list[list[tuple[str, str, bytes, int]]]
) -> None:
    from replaydiff.curation.dedup import dedup

    original = _from_plan(plan)
    corpus = _write(tmp_path / "in.jsonl.zst", original)
    out = tmp_path / "out.jsonl.zst"
    result = dedup(corpus, out)
    kept = list(CorpusReader(out))
    assert result.represented == sum(weight_of(e) for e in kept) == len(original)
    assert len(list(with_weights_expanded(kept))) == len(original)
    by_id = {e.id: e for e in original}
    assert all(by_id[e.id].request == e.request and by_id[e.id].session == e.session for e in kept)
    surviving = {e.session for e in kept}
    for session in surviving:  # a session that stays keeps every request that changes state, in order
        posts = [e.id for e in original if e.session == session and e.request.method == "POST"]
        assert posts == [e.id for e in kept if e.session == session and e.request.method == "POST"]
