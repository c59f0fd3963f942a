"""Fuzzing gRPC: requests generated from the schema's input types or from the recorded messages' wire shape.

The strategies and the requests they build are checked here on the demo catalog's real messages, and a whole
session against real grpc_catalog servers."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replaydiff.corpora import CorpusWriter, Exchange, Request, Response
from replaydiff.corpora import protowire
from replaydiff.corpora.endpoints import EndpointPatterns
from replaydiff.corpora.grpc import GrpcMessage, is_grpc, join_messages, split_messages
from replaydiff.corpora.protobuf import ProtoSchema
from replaydiff.demo import grpc_catalog
from replaydiff.diff.messages import wire_document
from replaydiff.fuzz.curl import printf_escaped, curl_command
from replaydiff.fuzz.grpc_messages import wire_encoded
from replaydiff.fuzz.infer import EndpointShape, infer_endpoints
from replaydiff.fuzz.strategies import requests
from replaydiff.fuzz.workflow import with_schema
from replaydiff.replayer.targets import Target

CLASSES = grpc_catalog.message_classes()
SCHEMA = ProtoSchema(grpc_catalog.descriptor_set(), "catalog.proto")
GET, LIST = "grpc shop.Catalog/GetItem", "grpc shop.Catalog/ListItems"
HEADERS = [("content-type", "application/grpc"), ("te", "trailers"), ("user-agent", "grpc-python")]


def recorded_exchanges() -> list[Exchange]:
    """What a recording of the catalog's clients holds: framed request messages over HTTP/2."""
    calls = [("/shop.Catalog/GetItem", CLASSES["ItemRequest"](sku=f"sku-{n}")) for n in (1, 2, 3, 5)]
    calls += [("/shop.Catalog/ListItems", CLASSES["ListRequest"](category=f"cat-{n}", limit=n + 1)) for n in range(3)]
    return [
        Exchange(f"e{n}", "s", n * 1000, Request("POST", "http", "127.0.0.1", 50051, path, http_version="HTTP/2.0",
                 headers=HEADERS, body=join_messages([GrpcMessage(message.SerializeToString())])),
                 Response(200, "", "HTTP/2.0", [("content-type", "application/grpc")], trailers=[("grpc-status", "0")]))
        for n, (path, message) in enumerate(calls)
    ]  # fmt: skip


def shapes(schema: ProtoSchema | None) -> dict[str, EndpointShape]:
    inferred = infer_endpoints(recorded_exchanges(), EndpointPatterns())
    return {shape.endpoint: shape for shape in with_schema(list(inferred.values()), schema)}


def test_recorded_calls_are_grpc_shapes_by_wire_format() -> None:
    found = shapes(None)
    assert list(found) == [GET, LIST]
    get = found[GET]
    assert (get.method, get.grpc, get.segments) == ("POST", True, ("", "shop.Catalog", "GetItem"))
    assert set(get.body.fields["1"].strings) == {"sku-1", "sku-2", "sku-3", "sku-5"}
    assert set(found[LIST].body.fields["2"].numbers) == {1, 2, 3}
    assert get.grpc_input is None and shapes(SCHEMA)[GET].grpc_input.full_name == "shop.ItemRequest"


def single_message(request: Request) -> bytes:
    assert request.method == "POST" and request.http_version == "HTTP/2.0" and not request.query
    assert is_grpc(request.headers) and ("te", "trailers") in request.headers
    [message] = split_messages(request.body)
    assert not message.compressed
    return message.payload


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_schema_requests_are_messages_of_the_methods_input_type(data: st.DataObject) -> None:
    found = shapes(SCHEMA)
    request = data.draw(requests(found[LIST]))
    assert request.path == "/shop.Catalog/ListItems"
    message = CLASSES["ListRequest"].FromString(single_message(request))  # parses: every field within its type
    assert -(2**31) <= message.limit < 2**31


def test_schema_requests_start_from_the_recorded_values_and_reach_the_edges() -> None:
    shape = shapes(SCHEMA)[LIST]
    limits: set[int] = set()
    categories: set[str] = set()

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(requests(shape))
    def collect(request: Request) -> None:
        message = CLASSES["ListRequest"].FromString(single_message(request))
        limits.add(message.limit)
        categories.add(message.category)

    collect()
    assert {1, 2, 3} & limits and {2**31 - 1, -(2**31)} & limits  # recorded values, and the int32 edges
    assert {"cat-0", "cat-1", "cat-2"} & categories and len(categories) > 5


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_without_a_schema_requests_follow_the_recorded_wire_shape(data: st.DataObject) -> None:
    request = data.draw(requests(shapes(None)[GET]))
    fields = protowire.parse(single_message(request))  # always a well-formed message
    assert all(field.number in (1, 536_870_911) for field in fields)  # the recorded field, or the added one


PRINTABLE = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF, categories=("L", "N", "P", "S", "Zs")),
                    max_size=12)  # fmt: skip
"""Printable text reads back as text: without a schema a non-printable string that parses as a message is one."""


@settings(max_examples=100, deadline=None)
@given(sku=PRINTABLE, price=st.integers(0, 2**63 - 1), tags=st.lists(PRINTABLE.filter(bool), max_size=3),
       count=st.integers(0, 2**31 - 1), warehouse=PRINTABLE)  # fmt: skip
def test_a_wire_document_writes_back_to_the_same_message(
    sku: str, price: int, tags: list[str], count: int, warehouse: str
) -> None:
    message = CLASSES["Item"](sku=sku, price_cents=price, tags=tags)
    message.stock.CopyFrom(CLASSES["Stock"](count=count, warehouse=warehouse))
    payload = message.SerializeToString()
    assert CLASSES["Item"].FromString(wire_encoded(wire_document(payload))) == message


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=64))
def test_the_curl_line_spells_a_binary_body_byte_for_byte(body: bytes) -> None:
    spelled = shlex.quote(printf_escaped(body))
    assert subprocess.run(["sh", "-c", f"printf {spelled}"], capture_output=True, timeout=10).stdout == body


def test_the_curl_line_of_a_grpc_request_speaks_h2c() -> None:
    [request] = [e.request for e in recorded_exchanges()][:1]
    line = curl_command(request, Target.parse("baseline", "http://127.0.0.1:1"))
    assert line.startswith("printf ") and "| curl --http2-prior-knowledge " in line
    assert "-H 'te: trailers'" in line and line.endswith("--data-binary @-")


def run_fuzz_command(
    corpus: Path, urls: dict[str, str], cwd: Path, *extra: str | Path
) -> subprocess.CompletedProcess[str]:
    """`replaydiff fuzz` of `corpus` (25 examples, seed 1, no example database); `extra`: more options."""
    return subprocess.run(
        [Path(sys.executable).parent / "replaydiff", "fuzz", corpus, "--baseline", urls["baseline"],
         "--baseline2", urls["baseline2"], "--candidate", urls["candidate"], "--no-database", "--examples", "25",
         "--seed", "1", *extra],
        capture_output=True, text=True, timeout=120, cwd=cwd, env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip


def test_a_fuzz_session_against_real_catalogs_finds_the_planted_changes(tmp_path: Path) -> None:
    corpus = tmp_path / "catalog.jsonl.zst"
    with CorpusWriter(corpus, source="test") as writer:
        for exchange in recorded_exchanges():
            writer.write(exchange)
    servers = {role: grpc_catalog.serve(candidate=role == "candidate") for role in ("baseline", "baseline2", "candidate")}
    urls = {role: f"http://127.0.0.1:{port}" for role, (_, port) in servers.items()}
    try:
        planted = run_fuzz_command(corpus, urls, tmp_path)
        same = run_fuzz_command(corpus, {**urls, "candidate": urls["baseline2"]}, tmp_path)
    finally:
        for server, _ in servers.values():
            server.stop(0)
    assert planted.returncode == 1, planted.stdout + planted.stderr
    assert f"✗ {GET}: status NOT_FOUND → INTERNAL" in planted.stdout  # an unknown generated sku
    assert f"✗ {GET}: body $.price_cents" in planted.stdout  # by the schema reflection gave
    assert "grpc-status: INTERNAL" in planted.stdout
    # requests and answers read by the schema the differences were found by, not by field number
    assert "gRPC messages of shop.ItemRequest:" in planted.stdout and '"sku": ' in planted.stdout
    assert "gRPC messages of shop.Item:" in planted.stdout and '"price_cents": ' in planted.stdout
    assert "fields by number" not in planted.stdout
    assert same.returncode == 0, same.stdout + same.stderr
