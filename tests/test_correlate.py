"""Correlation: what each target answered replaces the recorded value wherever the session sends it later."""

from __future__ import annotations

import json
import string
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from replaydiff.corpora import Exchange, Request, Response
from replaydiff.replayer.correlate import SessionCorrelator

TARGETS = ("baseline", "baseline2", "candidate")


def _request(path: str, *, query: str = "", headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> Request:
    return Request("GET", "http", "svc", 80, path, query=query, headers=[("Host", "svc"), *(headers or [])], body=body)


def _observe(correlator: SessionCorrelator, request: Request, recorded: Response, live: dict[str, Response]) -> None:
    correlator.observe(Exchange("x", "s", 0, request, recorded), live)


def _answer(body: object = None, headers: list[tuple[str, str]] | None = None, status: int = 200) -> Response:
    return Response(status, headers=headers or [], body=json.dumps(body).encode() if body is not None else b"")


def test_etags_are_carried_into_preconditions_and_since_queries() -> None:
    correlator = SessionCorrelator()
    _observe(correlator, _request("/records"), _answer({"data": {"id": "abc"}}, [("ETag", '"1700000000001"')]), {
        target: _answer({"data": {"id": "abc"}}, [("ETag", f'"17999999999{n}0"')]) for n, target in enumerate(TARGETS)
    })  # fmt: skip
    preconditions = [("If-Match", '"1700000000001"'), ("If-None-Match", 'W/"1", "1700000000001"')]
    conditional = _request("/records/abc", headers=preconditions)
    rewritten = correlator.rewrite(conditional, "baseline2")
    assert rewritten.request.headers[1:] == [("If-Match", '"1799999999910"'), ("If-None-Match", 'W/"1", "1799999999910"')]
    assert rewritten.carried == 2 and rewritten.missing == ()
    since = correlator.rewrite(_request("/records", query="_since=1700000000001&_limit=3"), "candidate")
    assert since.request.query == "_since=1799999999920&_limit=3"


def test_a_next_page_token_and_a_short_server_made_name_are_carried() -> None:
    correlator = SessionCorrelator()
    next_page = "http://svc/v1/records?_limit=3&_token="
    recorded = _answer({"data": {"id": "j_u-KRMN"}}, [("Next-Page", f"{next_page}eyJyZWMi%3D")])
    live = {
        target: _answer({"data": {"id": f"name{n}xy"}}, [("Next-Page", f"{next_page}eyJ{n}%3D")])
        for n, target in enumerate(TARGETS)
    }
    _observe(correlator, _request("/v1/buckets"), recorded, live)
    recorded_page = _request("/v1/buckets/j_u-KRMN/records", query="_limit=3&_token=eyJyZWMi%3D")
    page = correlator.rewrite(recorded_page, "candidate")
    assert page.request.path == "/v1/buckets/name2xy/records"
    assert page.request.query == "_limit=3&_token=eyJ2%3D"
    assert page.carried == 2


def test_values_flow_into_json_bodies_and_header_tokens_with_their_types() -> None:
    correlator = SessionCorrelator()
    recorded = _answer({"order": 4711, "session": "sess-recorded-1"})
    live = {target: _answer({"order": 5000 + n, "session": f"sess-live-{n:07d}"}) for n, target in enumerate(TARGETS)}
    _observe(correlator, _request("/orders"), recorded, live)
    body = json.dumps({"order": 4711, "note": "4711", "keep": [1, True]}).encode()
    rewritten = correlator.rewrite(
        _request("/pay", headers=[("Authorization", "Bearer sess-recorded-1")], body=body), "baseline"
    )
    assert json.loads(rewritten.request.body) == {"order": 5000, "note": "5000", "keep": [1, True]}
    assert rewritten.request.headers[1] == ("Authorization", "Bearer sess-live-0000000")


def test_the_guard_leaves_short_values_echoes_and_candidate_only_changes() -> None:
    correlator = SessionCorrelator()
    request = _request("/items", query="name=lamp-42")
    recorded = _answer({"page": 7, "name": "lamp-42", "price": 120, "id": "rec-0001"})
    live = {
        "baseline": _answer({"page": 8, "name": "lamp-43", "price": 120, "id": "live-b1"}),
        "baseline2": _answer({"page": 9, "name": "lamp-44", "price": 120, "id": "live-b2"}),
        "candidate": _answer({"page": 8, "name": "lamp-45", "price": 121, "id": "live-c1"}),
    }
    _observe(correlator, request, recorded, live)
    later = _request("/items/7/lamp-42/120/rec-0001")
    assert correlator.rewrite(later, "candidate").request.path == "/items/7/lamp-42/120/live-c1"
    # 7: too short; lamp-42: the client sent it first (an echo); 120: only the candidate changed it (a divergence)


def test_values_a_target_never_answered_are_reported_where_they_were_needed() -> None:
    correlator = SessionCorrelator()
    recorded = _answer({"data": {"id": "rec-0001"}}, [("ETag", '"17"')])
    live = {"baseline": _answer({"data": {"id": "b-0001"}}, [("ETag", '"19"')]),
            "baseline2": _answer({"data": {"id": "b-0002"}}, [("ETag", '"23"')]),
            "candidate": Response(500, body=b"boom")}  # fmt: skip
    _observe(correlator, _request("/records"), recorded, live)
    later = _request("/records/rec-0001", headers=[("If-Match", '"17"')])
    assert correlator.rewrite(later, "baseline").carried == 2  # a quoted ETag is long enough, its bare "17" is not
    failed = correlator.rewrite(later, "candidate")
    assert failed.request == later and failed.carried == 0 and failed.missing == ("path", "header If-Match")


tokens = st.text(string.ascii_letters + string.digits + "-_", min_size=3, max_size=24)


@settings(max_examples=80, deadline=None)
@given(recorded=tokens, lives=st.lists(tokens, min_size=3, max_size=3, unique=True), other=tokens)
def test_a_learned_value_is_replaced_in_every_slot_and_nothing_else_changes(
    recorded: str, lives: list[str], other: str
) -> None:
    if recorded in lives or other == recorded:
        return
    correlator = SessionCorrelator()
    live = {target: _answer({"id": value}) for target, value in zip(TARGETS, lives)}
    _observe(correlator, _request("/make"), _answer({"id": recorded}), live)
    headers = [("X-Ref", recorded), ("X-Other", other)]
    body = json.dumps([recorded, other]).encode()
    sent = _request(f"/things/{recorded}/{other}", query=f"ref={recorded}&o={other}", headers=headers, body=body)
    for target, value in zip(TARGETS, lives):
        rewritten = correlator.rewrite(sent, target).request
        assert rewritten.path == f"/things/{value}/{other}"
        assert rewritten.query == f"ref={value}&o={other}"
        assert rewritten.headers[1:] == [("X-Ref", value), ("X-Other", other)]
        assert json.loads(rewritten.body) == [value, other]
    untouched = _request(f"/things/{other}", query=f"o={other}", headers=[("X-Other", other)])
    assert all(correlator.rewrite(untouched, target).request == untouched for target in TARGETS)


def test_the_replay_reports_values_a_target_never_answered(tmp_path: Path) -> None:
    """The candidate fails to create the thing: its later read cannot carry the id, and the replay says so
    in the record, in the summary it prints and in the results' end record."""
    from aiohttp import web

    from replaydiff.corpora import CorpusWriter, ResultsReader
    from tests.servers import serve

    def app(broken: bool) -> web.Application:
        made = iter(range(1000, 2000))

        async def create(request: web.Request) -> web.Response:
            if broken:
                return web.Response(status=500)
            return web.json_response({"id": f"thing-{next(made)}"}, status=201)

        async def read(request: web.Request) -> web.Response:
            return web.json_response({"id": request.match_info["id"]})

        application = web.Application()
        application.router.add_post("/things", create)
        application.router.add_get("/things/{id}", read)
        return application

    recorded_id = "thing-0001"
    created = Exchange("x0", "s", 0, Request("POST", "http", "svc", 80, "/things"),
                       Response(201, body=json.dumps({"id": recorded_id}).encode()))  # fmt: skip
    read = Exchange("x1", "s", 5000, Request("GET", "http", "svc", 80, f"/things/{recorded_id}"),
                    Response(200, body=json.dumps({"id": recorded_id}).encode()))  # fmt: skip
    corpus = tmp_path / "c.jsonl.zst"
    with CorpusWriter(corpus, source="test") as writer:
        writer.write(created)
        writer.write(read)
    results = tmp_path / "r.jsonl.zst"
    with serve(app(broken=False)) as good, serve(app(broken=True)) as bad:
        replay = subprocess.run(
            [sys.executable, "-m", "replaydiff.cli", "replay", str(corpus), "--baseline", good, "--candidate", bad,
             "-o", str(results)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    reader = ResultsReader(results)
    reads = {record.target: record for record in reader if record.exchange_id == "x1"}
    assert (reads["baseline"].carried, reads["baseline"].not_carried) == (1, [])
    assert (reads["candidate"].carried, reads["candidate"].not_carried) == (0, ["path"])
    assert reads["candidate"].endpoint == reads["baseline"].endpoint == "GET /things/{id}"
    counted = reader.end["carried"]["GET /things/{id}"]["candidate"]
    assert counted == {"carried": 0, "not_found": 1, "where": {"path": 1}}
    assert "not found in the answers of candidate ×1 (path ×1)" in replay.stdout + replay.stderr


def test_last_modified_is_carried_into_if_modified_since() -> None:
    correlator = SessionCorrelator()
    recorded = _answer({"ok": True}, [("Last-Modified", "Tue, 01 Dec 2026 11:20:20 GMT")])
    live = {target: _answer({"ok": True}, [("Last-Modified", f"Tue, 01 Dec 2026 12:0{n}:00 GMT")])
            for n, target in enumerate(TARGETS)}  # fmt: skip
    _observe(correlator, _request("/doc"), recorded, live)
    again = _request("/doc", headers=[("If-Modified-Since", "Tue, 01 Dec 2026 11:20:20 GMT")])
    carried = correlator.rewrite(again, "candidate").request.headers[1]
    assert carried == ("If-Modified-Since", "Tue, 01 Dec 2026 12:02:00 GMT")
