"""The deciding parts of fuzz sessions, without servers: inference, strategies, the verdict, curl, the regression corpus."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from urllib.parse import parse_qsl

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replaydiff.corpora import Attempt, CorpusReader, Exchange, Headers, ReplayRecord, Request, Response
from replaydiff.diff.rules import parse_rules
from replaydiff.replayer.targets import Target
from replaydiff.fuzz.curl import curl_command
from replaydiff.fuzz.infer import ValueShape, infer_endpoints, select
from replaydiff.fuzz.regressions import append_failures
from replaydiff.fuzz.session import Failure, divergent_type
from replaydiff.fuzz.strategies import VERY_LONG, int_edges, requests, string_edges
from replaydiff.fuzz.verdict import NoiseJudge, signature

ORDER_ID = "3a72a45e-dc07-4b30-b65e-810cab9c2ac9"


def exchange(number: int, method: str, target: str, body: object = None, headers: Headers = ()) -> Exchange:  # type: ignore[assignment]
    path, _, query = target.partition("?")
    raw = json.dumps(body).encode() if body is not None else b""
    request = Request(method, "http", "shop", 80, path, query, headers=[("Host", "shop"), *headers], body=raw)
    return Exchange(str(number), "s", number, request, Response(200))


CORPUS = [
    exchange(1, "POST", "/orders", {"items": [{"sku": 3, "qty": 1}], "note": None, "email": "a@x.org"}),
    exchange(2, "POST", "/orders", {"items": [{"sku": 9, "qty": 2}, {"sku": 4, "qty": 5}], "note": "door",
                                    "email": "b@y.org"}),
    exchange(3, "POST", "/orders", {"items": [{"sku": 3, "qty": 1}], "note": "door", "email": "c@z.org",
                                    "express": True}),
    exchange(4, "GET", f"/orders/{ORDER_ID}?page=1&sort=asc", headers=[("User-Agent", "app/1")]),
    exchange(5, "GET", "/orders/0b6c1f4e-0000-4b30-b65e-810cab9c2ac9?page=2", headers=[("User-Agent", "app/2")]),
]  # fmt: skip
SHAPES = infer_endpoints(CORPUS)
ORDERS, ORDER = SHAPES["POST /orders"], SHAPES["GET /orders/{id}"]


def test_body_shapes_record_types_ranges_formats_and_presence() -> None:
    body = ORDERS.body
    assert body.required("items") and body.required("email") and not body.required("express")
    item = body.fields["items"].items
    assert item is not None and (item.fields["qty"].low, item.fields["qty"].high) == (1, 5)
    assert (body.fields["items"].min_items, body.fields["items"].max_items) == (1, 2)
    assert body.fields["note"].nullable and body.fields["email"].format == "email"


def test_path_query_and_header_shapes() -> None:
    assert ORDER.parameter_positions == [2] and ORDER.params[0].format == "uuid"
    assert ORDER.query.required("page") and not ORDER.query.required("sort")
    assert ORDER.query.fields["page"].format == "integer"
    assert set(ORDER.headers.fields["User-Agent"].strings) == {"app/1", "app/2"}


def test_select_matches_endpoints_and_paths() -> None:
    assert [s.endpoint for s in select(SHAPES, ["POST *"])] == ["POST /orders"]
    assert [s.endpoint for s in select(SHAPES, ["/orders/*"])] == ["GET /orders/{id}"]
    assert len(select(SHAPES, [])) == 2


def test_edges_include_boundaries_neighbours_and_odd_strings() -> None:
    qty = ValueShape()
    for value in (1, 2, 5):
        qty.observe(value)
    edges = int_edges(qty)
    assert edges[0] == 0 and {-1, 6, 3, 2**31} <= set(edges) and not {1, 2, 5} & set(edges)
    coupon = ValueShape()
    for value in ("SPRING", "SPRING", "FREE", "FREE"):
        coupon.observe(value)
    strings = string_edges(coupon)
    assert strings[0] == "" and "x" * VERY_LONG in strings and "spring" in strings
    assert any(not s.isascii() for s in strings)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data())
def test_generated_requests_keep_the_endpoint_and_are_well_formed(data: st.DataObject) -> None:
    shape = data.draw(st.sampled_from([ORDERS, ORDER]))
    request = data.draw(requests(shape))
    assert request.method == shape.method and request.host == "shop"
    assert len(request.path.split("/")) == len(shape.segments)
    assert request.path.startswith("/orders")
    parse_qsl(request.query, strict_parsing=False)
    if shape is ORDERS:
        json.loads(request.body)  # always a JSON document, even when a field is broken
    else:
        assert request.body == b""


def record(target: str, status: int, body: dict[str, object] | None = None) -> ReplayRecord:
    response = Response(status, body=json.dumps(body or {}).encode())
    return ReplayRecord("x", target, "GET /a", [Attempt(0, 1, 1, status)], response)


def test_noise_learned_from_the_second_baseline_is_not_a_divergence() -> None:
    judge = NoiseJudge()
    noisy = judge.suspects("GET /a", record("baseline", 200, {"id": 1}), record("baseline2", 200, {"id": 2}),
                           record("candidate", 200, {"id": 3}))  # fmt: skip
    assert noisy == []
    later = judge.suspects("GET /a", record("baseline", 200, {"id": 1, "v": 1}), record("baseline2", 200, {"id": 1, "v": 1}),
                           record("candidate", 200, {"id": 7, "v": 2}))  # fmt: skip
    assert [d.location for d in later] == ["$.v"]  # $.id stays noise for the endpoint


def test_rules_apply_and_a_candidate_5xx_always_counts() -> None:
    judge = NoiseJudge(parse_rules('[[rule]]\npath = "$.rating"\ntolerance = 0.1\n'))
    assert not judge.suspects("GET /a", record("baseline", 200, {"rating": 1.0}), record("baseline2", 200, {"rating": 1.0}),
                              record("candidate", 200, {"rating": 1.05}))  # fmt: skip
    crashed = record("candidate", 500, {"error": "boom"})
    flaky_status = judge.suspects("GET /a", record("baseline", 200), record("baseline2", 503), crashed)
    assert signature(flaky_status, crashed) == "status 2xx → 500 (no content-type: error)"


def test_confirmation_drops_what_does_not_reproduce() -> None:
    judge = NoiseJudge()
    base, base2 = record("baseline", 200, {"a": 1}), record("baseline2", 200, {"a": 1})
    suspects = judge.suspects("GET /a", base, base2, record("candidate", 200, {"a": 1, "promo": "X"}))
    assert judge.confirmed("GET /a", suspects, base, base2, record("candidate", 200, {"a": 1})) == []


def test_one_exception_class_per_signature() -> None:
    assert divergent_type("status 200 → 500") is divergent_type("status 200 → 500")
    assert divergent_type("status 200 → 500") is not divergent_type("status 400 → 500")


def test_curl_line_sends_the_same_request() -> None:
    request = Request("POST", "http", "shop", 80, "/a b", "q=1", headers=[("Host", "shop"), ("X-K", "it's")],
                      body=b'{"n": "\'"}')  # fmt: skip
    words = shlex.split(curl_command(request, Target.parse("candidate", "http://127.0.0.1:9")))
    assert words[words.index("-X") + 1] == "POST" and "http://127.0.0.1:9/a b?q=1" in words
    assert "X-K: it's" in words and words[-1] == '{"n": "\'"}'


def test_regression_corpus_appends_without_duplicates(tmp_path: Path) -> None:
    saved = tmp_path / "regress.jsonl.zst"
    failure = Failure("POST /orders", "status 400 → 500", CORPUS[0].request, record("baseline", 400),
                      record("candidate", 500), [])  # fmt: skip
    other = Failure("GET /orders/{id}", "body $.v", CORPUS[3].request, record("baseline", 200), record("candidate", 200), [])
    append_failures(saved, [failure])
    append_failures(saved, [failure, other])
    exchanges = list(CorpusReader(saved))
    assert [e.tags["fuzz"] for e in exchanges] == ["status 400 → 500", "body $.v"]
    assert exchanges[0].response is not None and exchanges[0].response.status == 400
    assert exchanges[1].start_us > exchanges[0].start_us
