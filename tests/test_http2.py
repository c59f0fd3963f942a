"""HTTP/2 and gRPC replay against real servers on 127.0.0.1: grpcio's catalog (the demo's), and a small h2
server that misbehaves on demand (stream resets, GOAWAY, silence, a low stream limit, TLS with ALPN)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from replaydiff.corpora import CorpusWriter, Exchange, ReplayRecord, Request, Response, ResultsReader
from replaydiff.corpora.grpc import GrpcMessage, grpc_status, join_messages, split_messages
from replaydiff.corpora.model import header_value
from replaydiff.demo.grpc_catalog import message_classes
from replaydiff.demo.grpc_catalog import serve as serve_catalog
from replaydiff.eventloop import run_fast
from replaydiff.replayer.client import Timeouts, TLSOptions
from replaydiff.replayer.engine import Replayer, ReplayOptions
from replaydiff.replayer.plan import plan
from replaydiff.replayer.retry import RetryPolicy
from replaydiff.replayer.targets import Target
from tests.h2server import Reply, Stream, h2_server
from tests.servers import raw_server, serve, socket_server
from tests.servers import self_signed_certificate, tls_server_context

GRPC_HEADERS = [("content-type", "application/grpc"), ("te", "trailers"), ("user-agent", "grpc-python/1.62")]


def _grpc(exchange_id: str, session: str, start_us: int, method: str, message: object) -> Exchange:
    body = join_messages([GrpcMessage(message.SerializeToString())])  # type: ignore[attr-defined]
    request = Request("POST", "http", "catalog.internal", 50051, f"/shop.Catalog/{method}", http_version="HTTP/2.0",
                      headers=list(GRPC_HEADERS), body=body)
    return Exchange(exchange_id, session, start_us, request, Response(200, http_version="HTTP/2.0"))


def _grpc_corpus(path: Path) -> Path:
    """A unary call, a server-streaming call and a call for an unknown sku (NOT_FOUND), as grpcio sends them."""
    messages = message_classes()
    with CorpusWriter(path, source="test") as writer:
        writer.write(_grpc("get", "s1", 0, "GetItem", messages["ItemRequest"](sku="sku-2")))
        writer.write(_grpc("list", "s1", 20_000, "ListItems", messages["ListRequest"](category="demo", limit=3)))
        missing = _grpc("missing", "s2", 10_000, "GetItem", messages["ItemRequest"](sku="sku-404"))
        missing.request.headers.remove(("te", "trailers"))  # dropped as hop-by-hop: grpcio resets a call without
        writer.write(missing)
    return path


@pytest.fixture(scope="module")
def catalogs() -> Iterator[dict[str, str]]:
    servers = {"baseline": serve_catalog(), "baseline2": serve_catalog(), "candidate": serve_catalog(candidate=True)}
    try:
        yield {name: f"http://127.0.0.1:{port}" for name, (_, port) in servers.items()}
    finally:
        for server, _ in servers.values():
            server.stop(0)


def _by_exchange(records: list[ReplayRecord]) -> dict[tuple[str, str], ReplayRecord]:
    return {(record.exchange_id, record.target): record for record in records}


@pytest.mark.parametrize("command", ["replay", "run"])
def test_a_grpc_corpus_replays_through_baseline_baseline2_and_candidate(
    command: str, catalogs: dict[str, str], tmp_path: Path
) -> None:
    corpus = _grpc_corpus(tmp_path / "grpc.jsonl.zst")
    results = tmp_path / "results.jsonl.zst"
    result = subprocess.run(
        [sys.executable, "-m", "replaydiff.cli", command, str(corpus), "--baseline", catalogs["baseline"],
         "--baseline2", catalogs["baseline2"], "--candidate", catalogs["candidate"], "--timeout", "10",
         "-o", str(results)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode in ((0,) if command == "replay" else (0, 1)), result.stderr[-2000:]
    records = _by_exchange(list(ResultsReader(results)))
    assert len(records) == 9 and all(r.response is not None and not r.final.error for r in records.values())
    item = message_classes()["Item"]
    for target in ("baseline", "baseline2", "candidate"):
        get, listed, missing = (records[(name, target)].response for name in ("get", "list", "missing"))
        assert get and listed and missing
        assert {get.status, listed.status, missing.status} == {200} and get.http_version == "HTTP/2.0"
        assert header_value(get.headers, "content-type") == "application/grpc"
        assert grpc_status(get) == 0 and header_value(get.trailers, "grpc-status") == "0"
        assert [item.FromString(m.payload).sku for m in split_messages(listed.body)] == ["sku-1", "sku-2", "sku-3"]
        assert grpc_status(listed) == 0
        assert grpc_status(missing) == (13 if target == "candidate" else 5)  # INTERNAL where NOT_FOUND was
        assert header_value(missing.headers, "grpc-message") == "no item sku-404"
        [message] = split_messages(get.body)
        answered = item.FromString(message.payload)
        assert answered.sku == "sku-2" and answered.stock.warehouse == "south"
        # the candidate sends price_cents (field 3) as a string: not the schema's number, kept as an unknown field
        assert answered.price_cents == (0 if target == "candidate" else 399)
    candidate_get = records[("get", "candidate")].response
    assert candidate_get and b"\x1a\x03399" in candidate_get.body


def _h2_request(path: str, *, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
                method: str = "GET") -> Request:
    return Request(method, "http", "api.internal", 8443, path, http_version="HTTP/2.0",
                   headers=headers if headers is not None else [("accept", "*/*")], body=body)


def _replay(targets: list[Target], requests: list[Request], **options: object) -> dict[tuple[str, str], ReplayRecord]:
    """Each request its own session, all due at once, through the asyncio engine."""
    exchanges = [Exchange(f"e{n}", f"s{n}", 0, request, Response(200)) for n, request in enumerate(requests)]
    records: list[ReplayRecord] = []
    replayer = Replayer(targets, sink=records.append, options=ReplayOptions(**options))  # type: ignore[arg-type]
    run_fast(replayer.run(plan([exchanges])))
    return _by_exchange(records)


def _echo(stream: Stream) -> Reply:
    return Reply(headers=[("content-type", "application/json")],
                 body=json.dumps({"path": stream.header(":path"), "length": len(stream.body)}).encode(),
                 trailers=[("x-checksum", str(sum(stream.body) % 997))])


def test_every_target_gets_the_recorded_request_with_its_own_headers_and_traceparent() -> None:
    recorded = _h2_request("/orders?page=2", method="POST", body=b'{"sku": 1}', headers=[
        ("content-type", "application/json"), ("content-length", "10"), ("te", "trailers"), ("connection", "close"),
        ("authorization", "Bearer recorded"), ("x-request-id", "abc")])  # fmt: skip
    with h2_server(_echo) as (url, observed):
        baseline = Target("baseline", url + "/v1", [("Authorization", "Bearer baseline")])
        candidate = Target("candidate", url, [("baggage", "sd-routing-key=cand")])
        records = _replay([baseline, candidate], [recorded])
    by_target = {stream.header("authorization"): stream for stream in observed.streams}
    to_baseline, to_candidate = by_target["Bearer baseline"], by_target["Bearer recorded"]
    assert to_baseline.header(":path") == "/v1/orders?page=2" and to_candidate.header(":path") == "/orders?page=2"
    for stream, target in ((to_baseline, "baseline"), (to_candidate, "candidate")):
        assert stream.header(":method") == "POST" and stream.header(":scheme") == "http"
        assert stream.header(":authority") == "api.internal:8443"  # recorded, as HTTP/1.1 keeps the recorded Host
        assert stream.header("te") == "trailers" and stream.header("connection") is None
        assert stream.header("content-length") == "10" and stream.body == b'{"sku": 1}'
        assert stream.header("x-request-id") == "abc"
        assert stream.header("traceparent") == f"00-{records[('e0', target)].trace_id}-" \
                                               f"{records[('e0', target)].final.span_id}-01"
    assert to_candidate.header("baggage") == "sd-routing-key=cand" and to_baseline.header("baggage") is None
    answer = records[("e0", "candidate")].response
    assert answer and answer.status == 200 and answer.http_version == "HTTP/2.0"
    assert json.loads(answer.body) == {"path": "/orders?page=2", "length": 10}
    assert answer.trailers == [("x-checksum", str(sum(b'{"sku": 1}') % 997))]


def test_resets_goaway_and_timeouts_are_outcomes_and_the_connection_is_replaced() -> None:
    def respond(stream: Stream) -> Reply:
        path = stream.header(":path")
        if path == "/reset":
            return Reply(action="reset", error_code=0xB)  # ENHANCE_YOUR_CALM
        if path == "/goaway":
            return Reply(action="goaway", error_code=0)
        if path == "/silent":
            return Reply(action="silence")
        return Reply(body=b"ok")

    with h2_server(respond) as (url, observed):
        target = Target("baseline", url)
        first = _replay([target], [_h2_request(p) for p in ("/reset", "/silent", "/ok")],
                        timeouts=Timeouts(read_s=0.5))
        retried = _replay([target], [_h2_request("/reset")], retry=RetryPolicy(retries=1, backoff_s=0.01))
        gone = _replay([target], [_h2_request("/goaway")])
        after = _replay([target], [_h2_request("/ok")])
    reset, silent, ok = (first[(f"e{n}", "baseline")].final for n in range(3))
    assert reset and reset.error == "reset" and "ENHANCE_YOUR_CALM" in (reset.error_detail or "")
    assert silent and silent.error == "timeout" and silent.duration_us >= 400_000
    assert ok and ok.status == 200 and first[("e2", "baseline")].response.body == b"ok"  # type: ignore[union-attr]
    assert [a.error for a in retried[("e0", "baseline")].attempts] == ["reset", "reset"]  # as for HTTP/1.1
    goaway = gone[("e0", "baseline")].final
    assert goaway and goaway.error == "reset" and "GOAWAY (NO_ERROR) without processing" in goaway.error_detail
    assert after[("e0", "baseline")].final.status == 200  # type: ignore[union-attr]
    assert observed.connections >= 2


def test_a_peer_that_is_not_http2_is_a_one_line_protocol_outcome() -> None:
    with raw_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n") as url:
        records = _replay([Target("baseline", url)], [_h2_request("/x")])
    final = records[("e0", "baseline")].final
    assert final and final.error == "protocol"
    assert final.error_detail == "the target does not speak HTTP/2: to the connection preface it answered " \
                                 "b'HTTP/1.1 400 Bad Request\\r\\nConten'"


def test_a_silent_peer_is_a_one_line_protocol_outcome_after_the_connect_timeout() -> None:
    """A server that accepts the connection and never answers the preface (an HTTP/1.1 server waiting for the
    rest of what it took for a request line)."""
    def listen(conn: socket.socket) -> None:
        with conn:
            while conn.recv(65536):
                pass

    with socket_server(listen) as url:
        records = _replay([Target("baseline", url)], [_h2_request("/x")], timeouts=Timeouts(connect_s=0.3))
    final = records[("e0", "baseline")].final
    assert final and final.error == "protocol" and final.error_detail == (
        "the target did not answer the HTTP/2 connection preface within 0.3 s; is it an HTTP/2 server?")


def test_the_locust_workers_connections_name_a_peer_that_is_not_http2_alike() -> None:
    """`replayer.blocking` (run here without gevent: plain blocking sockets) against the same two peers."""
    from replaydiff.replayer.blocking import BlockingH2Pool
    from replaydiff.replayer.http1 import Origin, ProtocolViolation

    def listen(conn: socket.socket) -> None:
        with conn:
            while conn.recv(65536):
                pass

    errors = []
    with socket_server(listen) as silent, raw_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n") as http1:
        for url, timeout in ((silent, 0.3), (http1, 5.0)):
            port = int(url.rsplit(":", 1)[1])
            pool = BlockingH2Pool(Origin("127.0.0.1", port, None), connect_timeout=timeout, read_timeout=5,
                                  max_body=1 << 20)
            with pytest.raises(ProtocolViolation) as failure:
                pool.request([(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/")],
                             b"")
            errors.append(str(failure.value))
    assert errors == ["the target did not answer the HTTP/2 connection preface within 0.3 s; is it an HTTP/2 server?",
                      "the target does not speak HTTP/2: to the connection preface it answered "
                      "b'HTTP/1.1 400 Bad Request\\r\\nConten'"]


def test_streams_respect_the_peers_stream_limit_and_flow_control_both_ways() -> None:
    """Twelve requests at once, two streams allowed per connection, request and answer bodies far above the
    65,535-byte initial windows."""
    big_answer = bytes(range(256)) * 4096  # 1 MiB

    def respond(stream: Stream) -> Reply:
        return Reply(body=stream.body + big_answer, delay_s=0.05)

    bodies = [bytes([n]) * 200_000 for n in range(12)]
    with h2_server(respond, max_streams=2) as (url, observed):
        records = _replay([Target("baseline", url)], [_h2_request("/up", method="PUT", body=b) for b in bodies],
                          concurrency=12, timeouts=Timeouts(read_s=5))
    assert observed.most_open <= 2 and 1 <= observed.connections <= 4
    for n, body in enumerate(bodies):
        response = records[(f"e{n}", "baseline")].response
        assert response and response.body == body + big_answer
    assert sorted(len(s.body) for s in observed.streams) == [200_000] * 12


def test_an_answer_before_the_whole_upload_frees_its_stream() -> None:
    """The target refuses a 1 MB upload from its headers (413) while most of the body still waits for its window:
    the rest is not sent, and the stream is freed, so the next request fits the target's one-stream limit."""

    upload_connections: list[int] = []

    def refuse_uploads(stream: Stream) -> Reply | None:
        if stream.header(":method") != "PUT":
            return None
        upload_connections.append(stream.connection)
        return Reply(413, body=b"too large")

    upload = _h2_request("/upload", method="PUT", body=b"x" * 1_000_000)
    exchanges = [Exchange("put", "s", 0, upload, Response(413)), Exchange("get", "s", 1000, _h2_request("/ok"),
                                                                             Response(200))]
    records: list[ReplayRecord] = []
    with h2_server(lambda _: Reply(body=b"ok"), max_streams=1, early=refuse_uploads) as (url, observed):
        run_fast(Replayer([Target("baseline", url)], sink=records.append,
                          options=ReplayOptions(timeouts=Timeouts(read_s=5))).run(plan([exchanges])))
    finals = {r.exchange_id: r.final for r in records}
    assert finals["put"] and finals["put"].status == 413
    assert finals["get"] and finals["get"].status == 200
    # the next request went where the upload had gone (its stream freed, that connection is again the least
    # loaded and first); which one that is in the server's accept order depends on which handshake ended first
    assert [stream.connection for stream in observed.streams] == upload_connections


def test_https_targets_negotiate_h2_by_alpn(tmp_path: Path) -> None:
    cert_file, key_file = self_signed_certificate(tmp_path)
    trusted = TLSOptions(ca_file=str(cert_file))
    with h2_server(_echo, tls=tls_server_context(cert_file, key_file, "h2")) as (url, observed):
        records = _replay([Target("baseline", url)], [_h2_request("/secure")], tls=trusted)
    response = records[("e0", "baseline")].response
    assert response and response.status == 200 and json.loads(response.body)["path"] == "/secure"
    assert observed.streams[0].header(":scheme") == "https"
    with h2_server(_echo, tls=tls_server_context(cert_file, key_file, "http/1.1")) as (url, _):
        records = _replay([Target("baseline", url)], [_h2_request("/secure")], tls=trusted)
    final = records[("e0", "baseline")].final
    assert final and final.error == "protocol" and "ALPN chose nothing" in (final.error_detail or "")


def test_http1_sends_exchanges_recorded_in_http2_to_a_target_that_speaks_only_http1(tmp_path: Path) -> None:
    """A browser's HTTP/2 recording replayed to an HTTP/1.1 service: by default each answer is a one-line protocol
    outcome; with --http1 the exchanges go out in HTTP/1.1 and are answered."""
    corpus = tmp_path / "c.jsonl.zst"
    with CorpusWriter(corpus, source="test") as writer:
        writer.write(Exchange("e0", "s0", 0, _h2_request("/api/items?page=1"), Response(200)))
    async def items(request: web.Request) -> web.Response:
        return web.json_response({"query": request.query_string, "host": request.host})

    app = web.Application()
    app.router.add_get("/api/items", items)
    finals = {}
    with serve(app) as url:
        for flags in ([], ["--http1"]):
            results = tmp_path / f"results{len(flags)}.jsonl.zst"
            result = subprocess.run(
                [sys.executable, "-m", "replaydiff.cli", "replay", str(corpus), "--baseline", url, "--candidate", url,
                 "-o", str(results), *flags], capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr[-2000:]
            finals[tuple(flags)] = {r.target: (r.final, r.response) for r in ResultsReader(results)}
    for attempt, response in finals[()].values():
        assert attempt and attempt.error == "protocol" and response is None
        assert (attempt.error_detail or "").startswith("the target does not speak HTTP/2: to the connection preface "
                                                       "it answered b'HTTP/1.0 400 Bad Request")
    for attempt, response in finals[("--http1",)].values():
        assert attempt and attempt.status == 200 and response and response.http_version == "HTTP/1.1"
        assert json.loads(response.body) == {"query": "page=1", "host": "api.internal:8443"}  # the recorded authority


def _misbehaving(stream: Stream) -> Reply:
    path = stream.header(":path")
    if path == "/reset":
        return Reply(action="reset", error_code=0x8)  # CANCEL
    if path == "/goaway":
        return Reply(action="goaway", error_code=0x2)  # INTERNAL_ERROR
    if path == "/silent":
        return Reply(action="silence")
    return Reply(body=b"ok", trailers=[("grpc-status", "0")])


@pytest.mark.slow  # a locust master and worker in subprocesses
def test_the_locust_engine_records_the_same_http2_outcomes(tmp_path: Path) -> None:
    corpus = tmp_path / "c.jsonl.zst"
    with CorpusWriter(corpus, source="test") as writer:
        for n, path in enumerate(["/ok", "/reset", "/ok", "/goaway", "/ok", "/silent"]):
            writer.write(Exchange(f"e{n}", f"s{n}", n * 50_000, _h2_request(path), Response(200)))
    outcomes = {}
    for engine in ("asyncio", "locust"):
        with h2_server(_misbehaving) as (url, _):
            results = tmp_path / f"{engine}.jsonl.zst"
            result = subprocess.run(
                [sys.executable, "-m", "replaydiff.cli", "replay", str(corpus), "--baseline", url, "--candidate", url,
                 "--engine", engine, "--timeout", "1", "-o", str(results)],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        outcomes[engine] = {
            (r.exchange_id, r.target): (r.final.status, r.final.error, r.response.trailers if r.response else None)
            for r in ResultsReader(results) if r.final
        }
    assert outcomes["locust"] == outcomes["asyncio"]
    assert outcomes["asyncio"][("e1", "baseline")] == (None, "reset", None)
    assert outcomes["asyncio"][("e3", "baseline")] == (None, "reset", None)
    assert outcomes["asyncio"][("e4", "baseline")] == (200, None, [("grpc-status", "0")])
    assert outcomes["asyncio"][("e5", "baseline")] == (None, "timeout", None)


def test_one_encoding_per_exchange_gives_each_target_its_own_authority_headers_and_recorded_rest() -> None:
    """The recorded part is encoded once per exchange (`EncodedHttp2Request`) and each target adds its own: a
    `Host` among a target's or the per-request headers is that target's :authority; a header a target sets
    replaces the recorded one, `te: trailers` included."""
    from replaydiff.replayer.client import EncodedHttp2Request, TargetCodec

    recorded = _h2_request("/v1/items", headers=[("te", "trailers"), ("x-tenant", "t1"), ("accept", "*/*"),
                                                 ("content-type", "application/grpc")])  # fmt: skip
    shared = EncodedHttp2Request.of(recorded)
    plain = TargetCodec(Target("baseline", "http://127.0.0.1:1"))
    hosted = TargetCodec(Target("candidate", "http://127.0.0.1:2/prefix", [("Host", "sandbox.internal"),
                                                                           ("X-Tenant", "sandbox")]))
    fields, _ = plain.http2_request(shared, [("traceparent", "00-a-b-01")])
    assert fields == plain.http2_request(recorded, [("traceparent", "00-a-b-01")])[0]  # as from the recording
    assert dict(fields)[b":authority"] == b"api.internal:8443" and dict(fields)[b"x-tenant"] == b"t1"
    assert fields.count((b"te", b"trailers")) == 1
    fields, _ = hosted.http2_request(shared, [("traceparent", "00-a-c-01")])
    assert dict(fields)[b":authority"] == b"sandbox.internal" and dict(fields)[b":path"] == b"/prefix/v1/items"
    assert (b"x-tenant", b"sandbox") in fields and (b"x-tenant", b"t1") not in fields
    assert (b"host", b"sandbox.internal") not in fields and fields.count((b"te", b"trailers")) == 1
    fields, _ = plain.http2_request(shared, [("Host", "per-request.internal"), ("TE", "gzip")])
    assert dict(fields)[b":authority"] == b"per-request.internal" and (b"te", b"gzip") in fields
    assert (b"te", b"trailers") not in fields
