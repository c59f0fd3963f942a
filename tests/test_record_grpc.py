"""Recording HTTP/2 and gRPC end to end: a real grpcio client, `replaydiff record` as a subprocess speaking h2c with
prior knowledge on both legs, the real grpcio catalog behind it, then the corpus on disk."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from replaydiff.corpora import CorpusReader, Exchange, UpstreamCall, UpstreamLogReader, header_value
from replaydiff.corpora.container import decompressed_bytes
from replaydiff.corpora.grpc import grpc_status, split_messages
from replaydiff.demo import grpc_catalog
from replaydiff.recorder.http2 import PREFACE
from replaydiff.corpora.ports import free_port
from tests.servers import self_signed_certificate
from tests.test_recorder import ADDON, BIN, Proxy, Upstream, wait_until_accepting
from tests.waiting import readable_records, wait_until

MESSAGES = grpc_catalog.message_classes()


@pytest.fixture(scope="module")
def catalog() -> Iterator[int]:
    server, port = grpc_catalog.serve()
    try:
        yield port
    finally:
        server.stop(0)


def start_recorder(tmp_path: Path, upstream: str, *extra: str | Path) -> tuple[Proxy, str, Path]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    corpus = tmp_path / "grpc.jsonl.zst"
    proxy = Proxy(
        [BIN / "replaydiff", "record", "--upstream", upstream, "--listen", "0", "-o", corpus.name, *extra],
        cwd=tmp_path,
        home=home,
    )
    return proxy, proxy.wait_for_listening_url(), corpus


def call_catalog(address: str, options: list[tuple[str, object]] | None = None) -> None:
    """The three kinds of answer a gRPC service gives: a message, an error (trailers-only), a stream."""
    with grpc.insecure_channel(address, options=options) as channel:
        get_item = channel.unary_unary(
            "/shop.Catalog/GetItem",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=MESSAGES["Item"].FromString,
        )
        list_items = channel.unary_stream(
            "/shop.Catalog/ListItems",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=MESSAGES["Item"].FromString,
        )
        item = get_item(MESSAGES["ItemRequest"](sku="sku-3"), timeout=10)
        assert (item.name, item.price_cents, item.stock.warehouse) == ("Item 3", 499, "north")
        with pytest.raises(grpc.RpcError) as failure:
            get_item(MESSAGES["ItemRequest"](sku="sku-404"), timeout=10)
        assert failure.value.code() == grpc.StatusCode.NOT_FOUND and failure.value.details() == "no item sku-404"
        listed = list(list_items(MESSAGES["ListRequest"](limit=4), timeout=10))
        assert [entry.sku for entry in listed] == ["sku-1", "sku-2", "sku-3", "sku-4"]


def recorded(tmp_path: Path, catalog: int, *extra: str | Path) -> tuple[list[Exchange], Path]:
    proxy, url, corpus = start_recorder(tmp_path, f"http://127.0.0.1:{catalog}", *extra)
    try:
        call_catalog(url.removeprefix("http://"))
        wait_until(lambda: readable_records(corpus, CorpusReader) == 3, "the recorder to flush 3 gRPC calls")
        assert proxy.stop() == 0, "".join(proxy.lines)
    finally:
        proxy.kill()
    assert proxy.lines[-1] == "replaydiff: wrote 3 exchanges to grpc.jsonl.zst\n", "".join(proxy.lines)
    return list(CorpusReader(corpus)), corpus


def test_grpc_over_h2c_is_recorded_with_version_trailers_and_framing(tmp_path: Path, catalog: int) -> None:
    exchanges, corpus = recorded(tmp_path, catalog)
    by_call = {(exchange.request.path, exchange.request.body[7:]): exchange for exchange in exchanges}
    assert len(by_call) == 3
    for exchange in exchanges:
        request, response = exchange.request, exchange.response
        assert response is not None, exchange.tags
        assert request.http_version == response.http_version == "HTTP/2.0"
        assert (request.method, request.scheme, request.host, request.port) == ("POST", "http", "127.0.0.1", catalog)
        assert not any(name.startswith(":") for name, _ in request.headers + response.headers), "pseudo-headers"
        assert header_value(request.headers, "te") == "trailers"
        assert len(split_messages(request.body)) == 1

    found = by_call["/shop.Catalog/GetItem", b"sku-3"].response
    assert found is not None and grpc_status(found) == 0 and header_value(found.trailers, "grpc-status") == "0"
    [item] = split_messages(found.body)
    assert MESSAGES["Item"].FromString(item.payload).name == "Item 3"

    missing = by_call["/shop.Catalog/GetItem", b"sku-404"].response
    assert missing is not None and missing.body == b"" and grpc_status(missing) == 5
    assert header_value(missing.headers, "grpc-message") == "no item sku-404", "a trailers-only answer"

    listed = next(exchange for exchange in exchanges if exchange.request.path == "/shop.Catalog/ListItems").response
    assert listed is not None and grpc_status(listed) == 0
    names = [MESSAGES["Item"].FromString(message.payload).name for message in split_messages(listed.body)]
    assert names == ["Item 1", "Item 2", "Item 3", "Item 4"]
    assert b"@example.com" not in decompressed_bytes(corpus), "emails in messages are sanitized by default"


def test_a_capped_grpc_body_keeps_whole_messages(tmp_path: Path, catalog: int) -> None:
    exchanges, _ = recorded(tmp_path, catalog, "--max-body", "150")
    listed = next(exchange for exchange in exchanges if exchange.request.path == "/shop.Catalog/ListItems")
    assert listed.response is not None and listed.tags["truncated"].startswith("response:")
    messages = split_messages(listed.response.body)
    assert 1 <= len(messages) < 4 and len(listed.response.body) <= 150
    assert MESSAGES["Item"].FromString(messages[0].payload).name == "Item 1"


def test_not_http2_after_the_preface_is_one_line_and_the_proxy_keeps_serving(tmp_path: Path, catalog: int) -> None:
    proxy, url, corpus = start_recorder(tmp_path, f"http://127.0.0.1:{catalog}")
    host, port = url.removeprefix("http://").split(":")
    try:
        settings_frame = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        headers_frame_of_garbage = b"\x00\x00\x05\x01\x05\x00\x00\x00\x01" + b"\xff" * 5
        for garbage in (PREFACE + settings_frame + headers_frame_of_garbage, b"\x00\x01 not http at all\r\n\r\n"):
            with socket.create_connection((host, int(port)), timeout=10) as client:
                client.sendall(garbage)
                client.shutdown(socket.SHUT_WR)
                while client.recv(4096):
                    pass  # the proxy answers (an HTTP/2 GOAWAY or an HTTP/1 400) and closes
        call_catalog(f"{host}:{port}")
        wait_until(lambda: readable_records(corpus, CorpusReader) == 3, "the calls after the garbage to be recorded")
        assert proxy.stop() == 0
    finally:
        proxy.kill()
    assert not any("Traceback" in line for line in proxy.lines), "".join(proxy.lines)
    warnings = [line for line in proxy.lines if line.startswith("replaydiff: warning:")]
    assert len(warnings) == 2, "".join(proxy.lines)
    assert "HTTP/2 protocol error" in warnings[0] and "Bad HTTP request line" in warnings[1]


def test_with_a_schema_messages_are_sanitized_by_field_name(tmp_path: Path, catalog: int) -> None:
    policy = tmp_path / "grpc-policy.toml"
    policy.write_text('[[rules]]\nname = "owner"\njson = ["$.owner_email"]\n')
    exchanges, corpus = recorded(tmp_path, catalog, "--proto", grpc_catalog.PROTO, "--policy", policy)
    answers = [
        MESSAGES["Item"].FromString(message.payload)
        for exchange in exchanges
        if exchange.response is not None
        for message in split_messages(exchange.response.body)
    ]
    assert len(answers) == 5 and {answer.owner_email for answer in answers} == {"[masked]"}
    assert [answer.name for answer in answers] == ["Item 3", "Item 1", "Item 2", "Item 3", "Item 4"]
    assert b"@example" not in decompressed_bytes(corpus)
    reader = CorpusReader(corpus)
    list(reader)
    assert reader.end["sanitizer"]["fired"]["owner"] == 5
    assert reader.header["sanitizer"]["grpc_schema"] == str(grpc_catalog.PROTO)


def test_an_unusable_schema_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.desc"
    bad.write_bytes(b"not a descriptor set")
    done = subprocess.run(
        [BIN / "replaydiff", "record", "--upstream", "http://127.0.0.1:9", "--listen", "0", "-o", tmp_path / "x.jsonl.zst",
         "--proto-descriptor-set", bad],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "bad.desc is not a protobuf descriptor set" in done.stderr and "Traceback" not in done.stderr


def test_a_preface_split_across_reads_is_still_recognised(tmp_path: Path, catalog: int) -> None:
    """A client's first read may hold only part of the preface: the decision waits for the rest."""
    import time

    import h2.config
    import h2.connection
    import h2.events

    proxy, url, corpus = start_recorder(tmp_path, f"http://127.0.0.1:{catalog}")
    host, port = url.removeprefix("http://").split(":")
    try:
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        connection.initiate_connection()
        opening = connection.data_to_send()
        request = MESSAGES["ItemRequest"](sku="sku-2").SerializeToString()
        connection.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", url[7:]),
                                    (":path", "/shop.Catalog/GetItem"), ("content-type", "application/grpc"),
                                    ("te", "trailers")])
        connection.send_data(1, b"\x00" + len(request).to_bytes(4, "big") + request, end_stream=True)
        with socket.create_connection((host, int(port)), timeout=10) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.sendall(opening[:9])  # "PRI * HTT"
            time.sleep(0.2)  # a gap, so the proxy reads the two parts apart (not a wait for a state)
            client.sendall(opening[9:] + connection.data_to_send())
            status = None
            while status is None:
                data = client.recv(65536)
                assert data, "the proxy closed the connection"
                for event in connection.receive_data(data):
                    if isinstance(event, h2.events.TrailersReceived):
                        status = dict(event.headers)[b"grpc-status"]
                client.sendall(connection.data_to_send())
        assert status == b"0"
        wait_until(lambda: readable_records(corpus, CorpusReader) == 1, "the call to be recorded")
        assert proxy.stop() == 0
    finally:
        proxy.kill()
    [exchange] = CorpusReader(corpus)
    assert exchange.request.http_version == "HTTP/2.0" and exchange.response is not None


def test_forward_mode_records_grpc_tunnelled_through_connect(tmp_path: Path, catalog: int) -> None:
    """grpcio's proxy support (`grpc_proxy`, `grpc.http_proxy`) opens a CONNECT tunnel and speaks h2c inside it."""
    home = tmp_path / "home"
    home.mkdir()
    corpus = tmp_path / "forward.jsonl.zst"
    proxy = Proxy([BIN / "replaydiff", "record", "--mode", "forward", "--listen", "0", "-o", corpus.name],
                  cwd=tmp_path, home=home)
    try:
        url = proxy.wait_for_listening_url()
        call_catalog(f"127.0.0.1:{catalog}", options=[("grpc.http_proxy", url), ("grpc.enable_http_proxy", 1)])
        wait_until(lambda: readable_records(corpus, CorpusReader) == 3, "the recorder to flush 3 gRPC calls")
        assert proxy.stop() == 0
    finally:
        proxy.kill()
    exchanges = list(CorpusReader(corpus))
    assert {exchange.request.http_version for exchange in exchanges} == {"HTTP/2.0"}
    assert {exchange.request.port for exchange in exchanges} == {catalog}
    assert sorted(grpc_status(exchange.response) for exchange in exchanges if exchange.response) == [0, 0, 5]


def tls_catalog(tmp_path: Path) -> tuple[grpc.Server, int]:
    """The catalog behind TLS (a self-signed certificate for localhost), on a free port."""
    certificate, key = (path.read_bytes() for path in self_signed_certificate(tmp_path))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    catalog = grpc_catalog.Catalog(candidate=False)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(grpc_catalog.SERVICE, {
        "GetItem": grpc.unary_unary_rpc_method_handler(
            catalog.get_item, request_deserializer=MESSAGES["ItemRequest"].FromString, response_serializer=bytes),
        "ListItems": grpc.unary_stream_rpc_method_handler(
            catalog.list_items, request_deserializer=MESSAGES["ListRequest"].FromString, response_serializer=bytes),
    }),))
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, certificate)]))
    server.start()
    return server, port


def mitmdump_in_front_of_tls(tls_port: int, corpus: Path, port: int, cwd: Path, home: Path) -> Proxy:
    """Plain mitmdump running the addon as a reverse proxy to a TLS server whose self-signed certificate it is told
    not to verify (`replaydiff record` has no such option)."""
    options = {"replaydiff_output": corpus, "confdir": cwd / "conf", "listen_host": "127.0.0.1",
               "listen_port": port, "ssl_insecure": "true"}
    settings = [arg for name, value in options.items() for arg in ("--set", f"{name}={value}")]
    return Proxy([BIN / "mitmdump", "-q", "-s", ADDON, "--mode", f"reverse:https://127.0.0.1:{tls_port}", *settings],
                 cwd=cwd, home=home)


def test_grpc_over_tls_with_alpn_h2_on_both_legs(tmp_path: Path) -> None:
    """The TLS case is mitmproxy's own (ALPN h2 with the client, h2 offered upstream); the addon keeps what it
    records. Run under plain mitmdump, which can be told not to verify the test server's self-signed certificate."""
    server, tls_port = tls_catalog(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    corpus, port = tmp_path / "tls.jsonl.zst", free_port()
    proxy = mitmdump_in_front_of_tls(tls_port, corpus, port, tmp_path, home)
    try:
        wait_until_accepting(port, proxy)
        authority = (tmp_path / "conf" / "mitmproxy-ca-cert.pem").read_bytes()
        credentials = grpc.ssl_channel_credentials(root_certificates=authority)
        with grpc.secure_channel(f"127.0.0.1:{port}", credentials,
                                 options=[("grpc.ssl_target_name_override", "localhost")]) as channel:
            get_item = channel.unary_unary("/shop.Catalog/GetItem", request_serializer=lambda m: m.SerializeToString(),
                                           response_deserializer=MESSAGES["Item"].FromString)
            assert get_item(MESSAGES["ItemRequest"](sku="sku-5"), timeout=10).name == "Item 5"
        wait_until(lambda: readable_records(corpus, CorpusReader) == 1, "the TLS call to be recorded")
        assert proxy.stop() == 0, "".join(proxy.lines)
    finally:
        proxy.kill()
        server.stop(0)
    [exchange] = CorpusReader(corpus)
    assert exchange.request.scheme == "https" and exchange.response is not None
    assert exchange.request.http_version == exchange.response.http_version == "HTTP/2.0", "h2 on both legs"
    assert grpc_status(exchange.response) == 0 and header_value(exchange.response.trailers, "grpc-status") == "0"
    [item] = split_messages(exchange.response.body)
    assert MESSAGES["Item"].FromString(item.payload).name == "Item 5"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_http2_over_tls_is_recorded_as_http2(tmp_path: Path) -> None:
    """`curl --http2` negotiates h2 by ALPN with the recorder; the HTTP/1.1 service behind it answers as before."""
    from http.server import ThreadingHTTPServer
    import threading

    service = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=service.serve_forever, daemon=True).start()
    proxy, url, corpus = start_recorder(tmp_path, f"http://127.0.0.1:{service.server_address[1]}", "--confdir", "conf")
    try:
        done = subprocess.run(
            ["curl", "-sS", "--http2", "--cacert", tmp_path / "conf" / "mitmproxy-ca-cert.pem", "-o", "/dev/null",
             "-w", "%{http_version} %{response_code}", url.replace("http://", "https://") + "/items"],
            capture_output=True, text=True, timeout=30,
        )
        assert done.stdout == "2 200", done.stderr
        wait_until(lambda: readable_records(corpus, CorpusReader) == 1, "the curl request to be recorded")
        assert proxy.stop() == 0
    finally:
        proxy.kill()
        service.shutdown()
        service.server_close()
    [exchange] = CorpusReader(corpus)
    assert exchange.request.http_version == "HTTP/2.0" and exchange.request.scheme == "http", "as the service saw it"
    assert exchange.response is not None and exchange.response.http_version == "HTTP/1.1", "as the service answered"
    assert not any(name.startswith(":") for name, _ in exchange.request.headers)


def tap_between_client_and_catalog(tmp_path: Path, log: Path, *arguments: str | Path) -> list[UpstreamCall]:
    """`replaydiff tap ARGUMENTS` with its `catalog` route between grpcio and the catalog: the three calls of
    `call_catalog` go through it (each checked by the client), and the tap's log of them is returned."""
    tap = Proxy([BIN / "replaydiff", "tap", *arguments, "-o", log, "--confdir", tmp_path / "conf"],
                cwd=tmp_path, home=tmp_path)
    try:
        listening = wait_until(lambda: next((m for line in tap.lines
                                             if (m := re.search(r"catalog http://(127\.0\.0\.1:\d+)", line))), None),
                               "the tap's listening line")
        call_catalog(listening.group(1))
        wait_until(lambda: readable_records(log, UpstreamLogReader) == 3, "the tap to log 3 calls")
        assert tap.stop() == 0, "".join(tap.lines)
    finally:
        tap.kill()
    return list(UpstreamLogReader(log))


def test_the_tap_logs_h2c_grpc_calls_to_a_dependency(tmp_path: Path, catalog: int) -> None:
    """`replaydiff tap` shares the recorder's proxy machinery: a service's h2c calls to a gRPC dependency pass and
    are logged whole, framing and trailers included."""
    log = tmp_path / "upstream.jsonl.zst"
    calls = tap_between_client_and_catalog(tmp_path, log, "--route", f"catalog=http://127.0.0.1:{catalog}")
    assert [call.path for call in calls] == ["/shop.Catalog/GetItem", "/shop.Catalog/GetItem", "/shop.Catalog/ListItems"]
    assert all(call.request and call.request.http_version == "HTTP/2.0" for call in calls)
    answers = [call.answer for call in calls]
    assert [grpc_status(answer) for answer in answers if answer] == [0, 5, 0]
    assert answers[2] is not None and len(split_messages(answers[2].body)) == 4
    assert b"@example.com" not in decompressed_bytes(log), "the tap sanitizes gRPC messages too"

    # the same calls answered by a mock of that log, with no route to the real catalog: messages, a trailers-only
    # NOT_FOUND and a stream, as grpcio expects them (grpc-status in the trailers)
    mocked = tap_between_client_and_catalog(tmp_path, tmp_path / "mocked.jsonl.zst", "--mock", log, "--route",
                                            f"catalog=@{free_port()}")
    assert [call.mock for call in mocked] == ["corpus", "corpus", "corpus"]


def test_a_gzip_compressed_call_is_sanitized_inside_its_compression(tmp_path: Path, catalog: int) -> None:
    import zlib

    proxy, url, corpus = start_recorder(tmp_path, f"http://127.0.0.1:{catalog}")
    try:
        with grpc.insecure_channel(url.removeprefix("http://"), compression=grpc.Compression.Gzip) as channel:
            get_item = channel.unary_unary("/shop.Catalog/GetItem", request_serializer=lambda m: m.SerializeToString(),
                                           response_deserializer=MESSAGES["Item"].FromString)
            sku = "padding " * 40 + "buyer@example.com"  # grpcio compresses a message only when that shrinks it
            with pytest.raises(grpc.RpcError) as failure:
                get_item(MESSAGES["ItemRequest"](sku=sku), timeout=10)
            assert failure.value.details() == f"no item {sku}", "the traffic itself is untouched"
        wait_until(lambda: readable_records(corpus, CorpusReader) == 1, "the call to be recorded")
        assert proxy.stop() == 0
    finally:
        proxy.kill()
    [exchange] = CorpusReader(corpus)
    assert header_value(exchange.request.headers, "grpc-encoding") == "gzip"
    [message] = split_messages(exchange.request.body)
    assert message.compressed, "grpcio compressed it"
    recorded_sku = MESSAGES["ItemRequest"].FromString(zlib.decompress(message.payload, 31)).sku
    assert recorded_sku.startswith("padding ") and recorded_sku.endswith("@example.invalid")
    assert b"buyer@example.com" not in decompressed_bytes(corpus), "nor in the trailers-only answer's grpc-message"


def test_a_repeated_grpc_call_after_unavailable_is_tagged_as_a_retry_but_not_after_not_found() -> None:
    from replaydiff.corpora import Request, Response
    from replaydiff.recorder.retries import RetryTagger

    def call(number: int, status: str) -> Exchange:
        request = Request("POST", "http", "catalog", 50051, "/shop.Catalog/GetItem", http_version="HTTP/2.0",
                          headers=[("content-type", "application/grpc")], body=b"\x00\x00\x00\x00\x02\n\x00")
        answer = Response(200, http_version="HTTP/2.0", headers=[("content-type", "application/grpc"),
                                                                 ("grpc-status", status)])
        return Exchange(f"e{number}", "s", number * 1000, request, answer, duration_us=100)

    tagger = RetryTagger()
    first, again, third = (tagger.tag(call(n, status)) for n, status in enumerate(("14", "14", "0")))
    assert "retry_of" not in first.tags and (again.tags["retry_of"], again.tags["attempt"]) == ("e0", "2")
    assert (third.tags["retry_of"], third.tags["attempt"]) == ("e0", "3")
    tagger = RetryTagger()
    assert "retry_of" not in [tagger.tag(call(n, "5")) for n in range(2)][1].tags, "NOT_FOUND is no failure to retry"


def test_an_h2c_client_in_front_of_a_tls_grpc_server_gets_h2_upstream(tmp_path: Path) -> None:
    """A sidecar's case: the client speaks h2c to the proxy, the proxy TLS to the service; ALPN offers it h2."""
    server, tls_port = tls_catalog(tmp_path)
    corpus, port = tmp_path / "tls.jsonl.zst", free_port()
    proxy = mitmdump_in_front_of_tls(tls_port, corpus, port, tmp_path, tmp_path)
    try:
        wait_until_accepting(port, proxy)
        call_catalog(f"127.0.0.1:{port}")
        wait_until(lambda: readable_records(corpus, CorpusReader) == 3, "the calls to be recorded")
        assert proxy.stop() == 0, "".join(proxy.lines)
    finally:
        proxy.kill()
        server.stop(0)
    exchanges = list(CorpusReader(corpus))
    assert {(exchange.request.http_version, exchange.response.http_version) for exchange in exchanges
            if exchange.response} == {("HTTP/2.0", "HTTP/2.0")}
