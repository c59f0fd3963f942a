"""The diff of gRPC calls: real grpc_catalog servers (baseline, baseline#2, candidate with `PLANTED_GRPC`) answered
real grpcio calls; `replaydiff diff` reads those answers with a descriptor set, a .proto file, the baseline's
server reflection, or no schema, and reports exactly the planted changes with field names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from replaydiff.corpora import Attempt, CorpusWriter, Exchange, ReplayRecord, Request, Response
from replaydiff.corpora.endpoints import EndpointPatterns, endpoint_of, learn_endpoints
from replaydiff.corpora.grpc import GrpcMessage, join_messages
from replaydiff.corpora.protobuf import ProtoSchema
from replaydiff.demo import grpc_catalog
from replaydiff.diff.compare import compare
from replaydiff.diff.messages import WIRE_NOTE, schema_document
from replaydiff.diff.rules import parse_rules
from tests.grpc_results import catalog_calls, catalogs, write_catalog_results

REPLAYDIFF = Path(sys.executable).parent / "replaydiff"
GET, LIST = "grpc shop.Catalog/GetItem", "grpc shop.Catalog/ListItems"
PLANTED = {f"{GET}|status|grpc-status", f"{GET}|body|$.price_cents"}
"""What the candidate's answers show (PLANTED_GRPC), besides ListItems being slower."""


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Results of the planted candidate; the servers keep running, so reflection can ask the baseline."""
    folder = tmp_path_factory.mktemp("grpc")
    with catalogs() as ports:
        yield write_catalog_results(folder / "planted.jsonl.zst", ports, catalog_calls())


@pytest.fixture(scope="module")
def aa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("grpc-aa")
    with catalogs(candidate_planted=False) as ports:
        return write_catalog_results(folder / "aa.jsonl.zst", ports, catalog_calls())


@pytest.fixture(scope="module")
def descriptor_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("schema") / "catalog.desc"
    path.write_bytes(grpc_catalog.descriptor_set())
    return path


def diff(results: Path, *args: str | Path) -> tuple[subprocess.CompletedProcess[str], dict]:  # type: ignore[type-arg]
    report = results.with_name(f"report-{abs(hash(args))}.json")
    result = subprocess.run([REPLAYDIFF, "diff", results, "--json", report, *map(str, args)],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "160"})  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return result, json.loads(report.read_text()) if report.exists() else {}


def fingerprints(data: dict) -> set[str]:  # type: ignore[type-arg]
    """What diverged, the slower stream aside: its latency finding is checked on its own."""
    return {d["fingerprint"] for d in data["divergences"] if d["kind"] != "latency"}


def assert_planted(result: subprocess.CompletedProcess[str], data: dict) -> None:  # type: ignore[type-arg]
    assert result.returncode == 1, result.stdout + result.stderr
    assert fingerprints(data) == PLANTED
    assert {d["endpoint"] for d in data["divergences"] if d["kind"] == "latency"} <= {LIST}
    titles = [finding["title"] for finding in data["findings"]]
    assert f"status NOT_FOUND → INTERNAL on {GET}" in titles
    assert f"`$.price_cents` changed type (number → string) on {GET}" in titles
    [retyped] = [d for d in data["divergences"] if d["location"] == "$.price_cents"]
    assert (retyped["count"], retyped["total"]) == (12, 16)
    example = retyped["examples"][0]
    assert example["candidate"] == f'"{example["baseline"]}"'  # the same price, sent as a string
    assert '"owner_email": "owner' in example["candidate_body"] and "gRPC messages of shop.Item" in example["candidate_body"]


def test_a_descriptor_set_names_the_retyped_field_and_the_status_change(planted: Path, descriptor_set: Path) -> None:
    result, data = diff(planted, "--proto-descriptor-set", descriptor_set)
    assert_planted(result, data)
    assert data["options"]["proto_schema"] == str(descriptor_set)
    assert "critical status NOT_FOUND → INTERNAL" in " ".join(result.stdout.split())


def test_a_proto_file_is_compiled_and_used_alike(planted: Path) -> None:
    result, data = diff(planted, "--proto", grpc_catalog.PROTO)
    assert_planted(result, data)


def test_the_schema_comes_by_reflection_from_the_running_baseline(planted: Path) -> None:
    result, data = diff(planted, "--proto-reflection", "--html", planted.with_name("report.html"))
    assert_planted(result, data)
    assert data["options"]["proto_schema"].startswith("server reflection of 127.0.0.1:")
    html = planted.with_name("report.html").read_text()
    assert GET in html and "$.price_cents" in html


def test_without_a_schema_the_wire_format_finds_the_same_changes_labelled(planted: Path) -> None:
    result, data = diff(planted)
    assert result.returncode == 1
    assert fingerprints(data) == {f"{GET}|status|grpc-status", f'{GET}|body|$["3"]'}
    [retyped] = [d for d in data["divergences"] if d["kind"] == "body"]
    assert retyped["detail"] == WIRE_NOTE
    assert any(f["title"].endswith("(gRPC wire format, no schema)") for f in data["findings"])
    assert "wire format: fields by number" in retyped["examples"][0]["candidate_body"]
    # on an 80-column terminal the finding still names its method; the line below says how it was read
    narrow = subprocess.run([REPLAYDIFF, "diff", planted], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "COLUMNS": "80"})  # fmt: skip
    lines = narrow.stdout.splitlines()
    [at] = [n for n, line in enumerate(lines) if '`$["3"]`' in line]
    assert lines[at].endswith("/GetItem  12/16 (75%)") and len(lines[at]) <= 80, lines[at]
    assert "gRPC wire format, no schema" in lines[at + 1], lines[at + 1]


def test_a_baseline_without_reflection_is_a_note_and_the_wire_format(tmp_path: Path) -> None:
    bare = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = bare.add_insecure_port("127.0.0.1:0")
    bare.start()
    try:
        with catalogs() as ports:
            targets = {role: f"http://127.0.0.1:{port}" for role in ports}  # the header names a server without it
            results = write_catalog_results(tmp_path / "r.jsonl.zst", ports, catalog_calls(4, 1, 0), targets)
        result, data = diff(results, "--proto-reflection")
    finally:
        bare.stop(0)
    assert result.returncode == 1
    assert f"schema: 127.0.0.1:{port} does not answer gRPC server reflection (UNIMPLEMENTED)" in result.stdout
    assert f'{GET}|body|$["3"]' in fingerprints(data)


@pytest.mark.parametrize("schema", ["descriptor set", "none"])
def test_an_aa_replay_of_grpc_reports_nothing(aa: Path, descriptor_set: Path, schema: str) -> None:
    result, data = diff(aa, *(["--proto-descriptor-set", descriptor_set] if schema != "none" else []))
    assert result.returncode == 0, result.stdout
    assert data["divergences"] == [] and "SAME  no divergences on 2 endpoints" in result.stdout


def test_bad_schema_files_are_one_line_errors(tmp_path: Path, planted: Path) -> None:
    not_a_set = tmp_path / "notes.desc"
    not_a_set.write_text("hello")
    broken = tmp_path / "broken.proto"
    broken.write_text("syntax = 'proto3'; message {")
    for args, *expected in (
        (["--proto-descriptor-set", not_a_set], "notes.desc is not a protobuf descriptor set"),
        (["--proto-descriptor-set", tmp_path / "missing.desc"], "missing.desc: cannot read the descriptor set"),
        (["--proto", broken], "protoc could not compile broken.proto: ", "Expected message name."),
    ):
        result, _ = diff(planted, *args)
        assert result.returncode == 2
        [line] = result.stderr.splitlines()
        assert line.startswith("replaydiff: error: ") and all(part in line for part in expected)


# Decoding, unit by unit, on real messages of the catalog's classes.

CLASSES = grpc_catalog.message_classes()
SCHEMA = ProtoSchema(grpc_catalog.descriptor_set(), "catalog.proto")


def call_record(target: str, endpoint: str, payloads: list[bytes] | bytes, status: int = 0) -> ReplayRecord:
    body = payloads if isinstance(payloads, bytes) else join_messages([GrpcMessage(p) for p in payloads])
    response = Response(200, "", "HTTP/2.0", [("content-type", "application/grpc")], body,
                        trailers=[("grpc-status", str(status))])  # fmt: skip
    return ReplayRecord("e1", target, endpoint, [Attempt(0, 10, 10, 200)], response)


def item(sku: str = "sku-1", count: int = 3, price: int = 250) -> bytes:
    message = CLASSES["Item"](sku=sku, name="Item", price_cents=price, tags=["demo"])
    message.stock.CopyFrom(CLASSES["Stock"](count=count, warehouse="north"))
    return message.SerializeToString()


def differences(left: ReplayRecord, right: ReplayRecord, schema: ProtoSchema | None = SCHEMA) -> list[tuple[str, ...]]:
    return [(d.kind, d.location, str(d.left), str(d.right)) for d in compare(left, right, schema=schema)]


def test_a_stream_compares_its_message_sequence() -> None:
    baseline = call_record("baseline", LIST, [item("sku-1"), item("sku-2", count=5)])
    candidate = call_record("candidate", LIST, [item("sku-1"), item("sku-2", count=0)])
    assert differences(baseline, candidate) == [("body", "$[*].stock.count", "5", "0")]  # a value gone to 0 shows
    shorter = call_record("candidate", LIST, [item("sku-1")])
    assert differences(baseline, shorter)[0][:2] == ("body", "$[*]")


def test_a_malformed_frame_or_a_message_that_does_not_parse_is_one_difference() -> None:
    baseline = call_record("baseline", GET, [item()])
    cut_frame = call_record("candidate", GET, b"\x00\x00\x00\x00\x09abc")
    assert differences(baseline, cut_frame) == [
        ("body", "", "1 message that parse", "malformed gRPC frame: gRPC message at byte 0 says 9 bytes but only 3 follow")
    ]
    garbage = call_record("candidate", GET, [b"\x0a\xff\xff"])
    [(kind, location, _, why)] = differences(baseline, garbage)
    assert (kind, location) == ("body", "") and why.startswith("message does not parse as shop.Item")
    assert differences(baseline, garbage, schema=None)[0][3].startswith("message is not protobuf wire format")


def test_trailers_are_compared_like_headers_and_codes_by_name() -> None:
    left, right = call_record("baseline", GET, [], 5), call_record("candidate", GET, [], 5)
    left.response.trailers.append(("grpc-message", "no item sku-9"))  # type: ignore[union-attr]
    right.response.trailers.append(("grpc-message", "sku-9 missing"))  # type: ignore[union-attr]
    assert differences(left, right) == [("header", "grpc-message", "no item sku-9", "sku-9 missing")]
    assert differences(left, call_record("candidate", GET, [], 42)) == [("status", "grpc-status", "NOT_FOUND", "CODE 42")]


def test_rules_work_on_field_paths_and_trailers() -> None:
    rules = parse_rules(
        '[[rule]]\nendpoint = "grpc shop.*"\npath = "$.stock.count"\nignore = true\n'
        '[[rule]]\npath = "$.3"\ntolerance = 1\n'
        '[[rule]]\nheader = "grpc-message"\npattern = "sku-\\\\d+"\nreplacement = "SKU"\n'
    ).for_endpoint(GET)
    left, right = call_record("baseline", GET, [item(count=3)]), call_record("candidate", GET, [item(count=0)])
    assert differences(left, right) == [("body", "$.stock.count", "3", "0")]
    assert compare(left, right, rules, SCHEMA) == []  # by field name, with a schema
    cheaper = call_record("candidate", GET, [item(price=251)])
    assert compare(left, cheaper, rules, None) == []  # by field number, without one
    left.response.trailers.append(("grpc-message", "no item sku-9"))  # type: ignore[union-attr]
    right.response.trailers.append(("grpc-message", "no item sku-10"))  # type: ignore[union-attr]
    assert compare(left, right, rules, SCHEMA) == []


def test_a_field_number_the_schema_does_not_know_is_shown_by_number() -> None:
    newer = item() + bytes([7 << 3 | 0, 1])  # a build whose schema added field 7 = true
    assert differences(call_record("baseline", GET, [item()]), call_record("candidate", GET, [newer])) == [
        ("body", '$["7"]', "None", "1")
    ]


@settings(max_examples=60, deadline=None)
@given(
    sku=st.text(max_size=8),
    price=st.integers(-(2**63), 2**63 - 1),
    tags=st.lists(st.text(max_size=4), max_size=3),
    count=st.integers(-(2**31), 2**31 - 1),
)
def test_a_message_decodes_to_its_fields_with_64_bit_integers_as_numbers(
    sku: str, price: int, tags: list[str], count: int
) -> None:
    message = CLASSES["Item"](sku=sku, price_cents=price, tags=tags)
    message.stock.CopyFrom(CLASSES["Stock"](count=count))
    document = schema_document(message.SerializeToString(), message.DESCRIPTOR)
    assert document["price_cents"] == price and document["stock"]["count"] == count
    assert list(document)[:3] == ["sku", "name", "price_cents"]  # every field, defaults included, in schema order
    assert json_format.ParseDict(document, CLASSES["Item"]()) == message


# Endpoint names: `grpc package.Service/Method`, never templated, in every report and in inspect.


def test_grpc_calls_are_named_by_method_and_never_templated() -> None:
    assert endpoint_of("POST", "/shop.Catalog/GetItem") == GET
    assert endpoint_of("GET", "/shop.Catalog/GetItem") == "GET /shop.Catalog/GetItem"  # gRPC is always a POST
    assert endpoint_of("POST", "/users/42") == "POST /users/{id}"
    methods = [f"/shop.Catalog/Method{n}x" for n in range(30)]  # many methods each called once: no {name}
    learned = learn_endpoints(methods)
    assert not learned and learned.endpoint("POST", methods[0]) == "grpc shop.Catalog/Method0x"
    patterns = EndpointPatterns([("/{a}/{b}", None)])
    assert patterns.endpoint("POST", "/shop.Catalog/GetItem") == GET and patterns.retemplate(GET) == GET


def test_inspect_names_grpc_endpoints(tmp_path: Path) -> None:
    corpus = tmp_path / "catalog.jsonl.zst"
    with CorpusWriter(corpus, source="test") as writer:
        for n, path in enumerate(["/shop.Catalog/GetItem"] * 3 + ["/shop.Catalog/ListItems"]):
            request = Request("POST", "http", "127.0.0.1", 50051, path, http_version="HTTP/2.0",
                              headers=[("content-type", "application/grpc")], body=join_messages([]))  # fmt: skip
            writer.write(Exchange(f"e{n}", "s", n, request, call_record("baseline", GET, [item()]).response))
    result = subprocess.run([REPLAYDIFF, "inspect", "--endpoints", corpus], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert GET in result.stdout and LIST in result.stdout


def test_run_asks_the_baseline_for_its_schema_by_itself(tmp_path: Path) -> None:
    corpus = tmp_path / "catalog.jsonl.zst"
    requests = CLASSES["ItemRequest"]
    with CorpusWriter(corpus, source="test") as writer:
        for n, sku in enumerate(["sku-1", "sku-2", "sku-3", "nope-1", "nope-2"]):
            body = join_messages([GrpcMessage(requests(sku=sku).SerializeToString())])
            request = Request("POST", "http", "catalog.internal", 50051, "/shop.Catalog/GetItem", http_version="HTTP/2.0",
                              headers=[("content-type", "application/grpc"), ("te", "trailers")], body=body)  # fmt: skip
            writer.write(Exchange(f"e{n}", "s", n * 1000, request, Response(200, http_version="HTTP/2.0")))
    with catalogs() as ports:
        urls = {role: f"http://127.0.0.1:{port}" for role, port in ports.items()}
        result = subprocess.run(
            [REPLAYDIFF, "run", corpus, "--baseline", urls["baseline"], "--baseline2", urls["baseline2"],
             "--candidate", urls["candidate"], "-o", tmp_path / "results.jsonl.zst", "--json", tmp_path / "r.json"],
            capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, "COLUMNS": "160"},
        )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["options"]["proto_schema"] == f"server reflection of {urls['baseline'].removeprefix('http://')}"
    assert fingerprints(data) == PLANTED
