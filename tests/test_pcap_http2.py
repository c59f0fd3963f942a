"""pcap import of cleartext HTTP/2: real grpcio traffic sniffed on loopback, and captures built from its bytes."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.packet import Packet
from scapy.utils import wrpcap

from replaydiff.corpora import CorpusReader, header_value
from replaydiff.corpora.container import decompressed_bytes
from replaydiff.corpora.grpc import grpc_status, split_messages
from replaydiff.demo import grpc_catalog
from replaydiff.recorder.http2 import PREFACE
from replaydiff.recorder.pcap import read_pcap
from tests.test_import import run_import
from tests.sniffing import sniffing_lo
from tests.test_pcap import Conversation
from tests.test_record_grpc import MESSAGES, call_catalog, catalog  # noqa: F401  # catalog: the grpcio server fixture


def sniffed_grpc_calls(port: int) -> list[Packet]:
    """The packets of `call_catalog` against the catalog on `port`, sniffed on lo (skips where sniffing is denied)."""
    with sniffing_lo(port, fins=1) as ours:
        call_catalog(f"127.0.0.1:{port}")
    return ours


def test_real_grpc_traffic_sniffed_on_loopback_imports_as_http2(tmp_path: Path, catalog: int) -> None:  # noqa: F811
    wrpcap(str(tmp_path / "grpc.pcap"), sniffed_grpc_calls(catalog))
    result = run_import("grpc.pcap", "-o", "grpc.jsonl.zst", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "unparseable" not in result.stderr, result.stderr
    exchanges = list(CorpusReader(tmp_path / "grpc.jsonl.zst"))
    assert [exchange.request.path for exchange in exchanges] == [
        "/shop.Catalog/GetItem", "/shop.Catalog/GetItem", "/shop.Catalog/ListItems"
    ]
    for exchange in exchanges:
        assert exchange.request.http_version == "HTTP/2.0" and exchange.request.method == "POST"
        assert exchange.request.port == catalog and exchange.response is not None
        assert exchange.response.http_version == "HTTP/2.0" and exchange.response.status == 200
        assert not any(name.startswith(":") for name, _ in exchange.request.headers + exchange.response.headers)
        assert exchange.duration_us > 0
    found, missing, listed = (exchange.response for exchange in exchanges)
    assert found and missing and listed
    assert header_value(found.trailers, "grpc-status") == "0"
    assert MESSAGES["Item"].FromString(split_messages(found.body)[0].payload).name == "Item 3"
    assert grpc_status(missing) == 5 and missing.body == b"", "trailers-only"
    assert len(split_messages(listed.body)) == 4 and grpc_status(listed) == 0
    assert b"@example.com" not in decompressed_bytes(tmp_path / "grpc.jsonl.zst"), "sanitized as the recorder does"


def test_http2_streams_in_small_segments_without_a_handshake(tmp_path: Path) -> None:
    """Frames split across many segments, the capture starting after the handshake: the preface names the client."""
    client, server = _grpc_bytes()
    packets = Conversation(syn=False, segment=7, server_port=50051).packets([(client, server)])
    wrpcap(str(tmp_path / "split.pcap"), packets[len(packets) // 2 :] + packets[: len(packets) // 2])
    capture = read_pcap(tmp_path / "split.pcap")
    [exchange] = capture.exchanges
    assert exchange.response is not None and grpc_status(exchange.response) == 0
    assert exchange.request.path == "/shop.Catalog/GetItem" and exchange.request.host == "catalog.local"
    assert MESSAGES["Item"].FromString(split_messages(exchange.response.body)[0].payload).sku == "sku-7"
    assert "unparseable_streams" not in capture.notes
    (tmp_path / "p.toml").write_text('[[rules]]\nname = "names"\njson = ["$.name"]\n')
    result = run_import("split.pcap", "-o", "s.jsonl.zst", "--proto", str(grpc_catalog.PROTO), "--policy", "p.toml",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    [imported] = CorpusReader(tmp_path / "s.jsonl.zst")
    assert imported.response is not None
    item = MESSAGES["Item"].FromString(split_messages(imported.response.body)[0].payload)
    assert (item.sku, item.name) == ("sku-7", "[masked]"), "import takes the gRPC schema options too"


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segment=st.integers(min_value=4, max_value=64), order=st.randoms(use_true_random=False))
def test_any_segmentation_and_order_reads_the_same_call(tmp_path: Path, segment: int, order: random.Random) -> None:
    """Data segments in any order, some twice (retransmissions); the handshake first and the closes last, as the
    reassembler needs to tell connections apart."""
    client, server = GRPC_CALL
    packets = Conversation(segment=segment, server_port=50051).packets([(client, server)])
    data = packets[2:-2] + order.sample(packets[2:-2], k=len(packets[2:-2]) // 4)
    order.shuffle(data)
    packets = packets[:2] + data + packets[-2:]
    wrpcap(str(tmp_path / "any.pcap"), packets)
    [exchange] = read_pcap(tmp_path / "any.pcap").exchanges
    assert exchange.response is not None and exchange.response.trailers == [("grpc-status", "0")]
    request = MESSAGES["ItemRequest"](sku="sku-7").SerializeToString()
    assert exchange.request.body == b"\x00" + len(request).to_bytes(4, "big") + request


def test_a_broken_http2_stream_keeps_what_came_before_and_says_why(tmp_path: Path) -> None:
    client, server = _grpc_bytes()
    garbage_headers = b"\x00\x00\x04\x01\x05\x00\x00\x00\x03" + b"\xff" * 4  # a HEADERS block hpack cannot decode
    cut_server = server[:-5]  # the capture ends inside the trailers frame
    for name, sent, answered, reason in (
        ("garbage.pcap", client + garbage_headers, server, "HTTP/2 header block does not decode"),
        ("cut.pcap", client, cut_server, "HTTP/2 stream ends inside a frame"),
    ):
        wrpcap(str(tmp_path / name), Conversation(server_port=50051).packets([(sent, answered)]))
        capture = read_pcap(tmp_path / name)
        assert [exchange.request.path for exchange in capture.exchanges] == ["/shop.Catalog/GetItem"]
        assert list(capture.notes["unparseable_streams"]) == [reason]
    result = run_import("garbage.pcap", "-o", "g.jsonl.zst", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr


def _grpc_bytes() -> tuple[bytes, bytes]:
    """One unary gRPC call as a client and a server write it, made by the `h2` library on both ends."""
    import h2.config
    import h2.connection
    import h2.events

    from replaydiff.corpora.grpc import GrpcMessage, join_messages

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    client.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "catalog.local:50051"),
                            (":path", "/shop.Catalog/GetItem"), ("content-type", "application/grpc"), ("te", "trailers")])
    request = MESSAGES["ItemRequest"](sku="sku-7").SerializeToString()
    client.send_data(1, join_messages([GrpcMessage(request)]), end_stream=True)
    sent = client.data_to_send()
    assert sent.startswith(PREFACE)
    server.initiate_connection()
    events = server.receive_data(sent)
    assert any(isinstance(event, h2.events.StreamEnded) for event in events)
    server.send_headers(1, [(":status", "200"), ("content-type", "application/grpc")])
    item = MESSAGES["Item"](sku="sku-7", name="Item 7").SerializeToString()
    server.send_data(1, join_messages([GrpcMessage(item)]))
    server.send_headers(1, [("grpc-status", "0")], end_stream=True)
    return sent, server.data_to_send()


GRPC_CALL = _grpc_bytes()
