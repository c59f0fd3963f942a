"""pcap and pcapng import: hostile captures built with scapy, and real loopback traffic from scapy's sniffer."""

from __future__ import annotations

import gzip
import random
import zlib
from dataclasses import dataclass
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap, wrpcapng

from replaydiff.corpora import CorpusReader, Exchange
from replaydiff.corpora.container import decompressed_bytes
from replaydiff.recorder.pcap import read_pcap
from replaydiff.recorder.sanitize import MASK
from tests.sniffing import sniffing_lo
from tests.test_import import run_import
from tests.test_recorder import upstream  # noqa: F401  # a fixture: the service the loopback test talks to

T0 = 1_700_000_000.0
CLIENT, SERVER = "10.0.0.1", "10.0.0.2"


@dataclass
class Conversation:
    """One TCP connection as a list of packets, built like a real client and server would send them."""

    client_port: int = 40000
    server_port: int = 8080
    syn: bool = True
    segment: int = 10

    def packets(self, turns: list[tuple[bytes, bytes]], *, start: float = T0) -> list[Packet]:
        """`turns`: (bytes the client sends, bytes the server answers); each turn 10 ms after the last."""
        c_seq, s_seq = 1000, 5000
        packets: list[Packet] = []
        if self.syn:
            packets += [self._packet(True, "S", c_seq - 1), self._packet(False, "SA", s_seq - 1)]
        for sent, answered in turns:
            packets += self._data(True, c_seq, sent)
            packets += self._data(False, s_seq, answered)
            c_seq, s_seq = c_seq + len(sent), s_seq + len(answered)
        packets += [self._packet(True, "FA", c_seq), self._packet(False, "FA", s_seq)]
        for index, packet in enumerate(packets):
            packet.time = start + index * 0.001
        return packets

    def _data(self, from_client: bool, seq: int, data: bytes) -> list[Packet]:
        size = self.segment
        return [self._packet(from_client, "PA", seq + i) / Raw(data[i : i + size]) for i in range(0, len(data), size)]

    def _packet(self, from_client: bool, flags: str, seq: int) -> Packet:
        src, dst = (CLIENT, SERVER) if from_client else (SERVER, CLIENT)
        sport, dport = (self.client_port, self.server_port) if from_client else (self.server_port, self.client_port)
        return Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq)


def request(method: str, target: str, body: bytes = b"", *headers: str) -> bytes:
    head = [f"{method} {target} HTTP/1.1", "Host: shop.local", *headers]
    if body:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def response(status: int, body: bytes = b"", *headers: str, length: bool = True) -> bytes:
    head = [f"HTTP/1.1 {status} X", *headers]
    if length:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


TURNS = [
    (request("GET", "/items?page=2", b"", "Authorization: Bearer pcapsecret1"), response(200, b'{"items": []}')),
    (
        request("POST", "/items", b'{"name": "lamp"}', "Content-Type: application/json"),
        response(201, gzip.compress(b'{"id": 7}'), "Content-Encoding: gzip"),
    ),
    (
        request("GET", "/chunked"),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\nX-Trailer: 1\r\n\r\n",
    ),
    (request("HEAD", "/items"), response(200, b"", "Content-Length: 1234", length=False)),
    (request("GET", "/deflate"), response(200, zlib.compress(b"deflated!"), "Content-Encoding: deflate")),
]


def summary(exchanges: list[Exchange]) -> list[tuple[object, ...]]:
    return [
        (e.request.method, e.request.target, e.request.body, e.response and (e.response.status, e.response.body))
        for e in exchanges
    ]


EXPECTED = [
    ("GET", "/items?page=2", b"", (200, b'{"items": []}')),
    ("POST", "/items", b'{"name": "lamp"}', (201, b'{"id": 7}')),
    ("GET", "/chunked", b"", (200, b"abcdefg")),
    ("HEAD", "/items", b"", (200, b"")),
    ("GET", "/deflate", b"", (200, b"deflated!")),
]


def test_keep_alive_chunked_gzip_deflate_and_head_with_packet_timestamps(tmp_path: Path) -> None:
    wrpcap(str(tmp_path / "c.pcap"), Conversation().packets(TURNS))
    capture = read_pcap(tmp_path / "c.pcap")
    assert summary(capture.exchanges) == EXPECTED
    first, second = capture.exchanges[:2]
    assert first.request.host == "shop.local" and first.request.port == 8080 and first.session == "tcp0"
    assert first.start_us == 0 and first.duration_us > 0
    assert second.start_us > first.start_us + first.duration_us, "timestamps come from the packets"
    assert second.response is not None and second.response.original_encoding == "gzip"
    assert capture.notes == {"packets": len(Conversation().packets(TURNS)), "tcp_connections": 1}


def test_pipelined_requests_and_interim_responses(tmp_path: Path) -> None:
    sent = request("GET", "/a") + request("PUT", "/b", b"xyz", "Expect: 100-continue") + request("DELETE", "/c")
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    answered = response(200, b"A") + interim + response(204, length=False) + response(404, b"no")
    wrpcap(str(tmp_path / "p.pcap"), Conversation(segment=7).packets([(sent, answered)]))
    assert summary(read_pcap(tmp_path / "p.pcap").exchanges) == [
        ("GET", "/a", b"", (200, b"A")),
        ("PUT", "/b", b"xyz", (204, b"")),
        ("DELETE", "/c", b"", (404, b"no")),
    ]


def test_http_1_0_body_until_close_on_any_port_without_a_handshake(tmp_path: Path) -> None:
    sent = b"GET /legacy HTTP/1.0\r\n\r\n"
    answered = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it until the connection closes"
    packets = Conversation(server_port=5432, syn=False).packets([(sent, answered)])
    wrpcap(str(tmp_path / "h.pcap"), packets[2:] + packets[:2])  # the server's packets come first
    (exchange,) = read_pcap(tmp_path / "h.pcap").exchanges
    assert exchange.request.http_version == "HTTP/1.0" and exchange.request.port == 5432
    assert exchange.response is not None and exchange.response.body.endswith(b"until the connection closes")


@st.composite
def hostile(draw: st.DrawFn) -> list[Packet]:
    """The same conversation with segments reordered, retransmitted, and re-cut so that copies overlap."""
    packets = Conversation(segment=draw(st.integers(3, 40))).packets(TURNS)
    handshake, rest = packets[:2], packets[2:]
    recut = Conversation(segment=draw(st.integers(3, 40))).packets(TURNS)[2:-2]  # other boundaries, same bytes
    overlapping = draw(st.lists(st.sampled_from(recut), max_size=15))
    duplicates = draw(st.lists(st.sampled_from(rest), max_size=10))
    return handshake + draw(st.permutations(rest + duplicates + overlapping))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(packets=hostile())
def test_reordered_duplicated_and_overlapping_segments_reassemble(tmp_path: Path, packets: list[Packet]) -> None:
    wrpcap(str(tmp_path / "hostile.pcap"), packets)
    capture = read_pcap(tmp_path / "hostile.pcap")
    assert summary(capture.exchanges) == EXPECTED
    assert "unparseable_streams" not in capture.notes


def test_truncated_and_gapped_captures_keep_what_is_complete_and_say_why(tmp_path: Path) -> None:
    packets = Conversation().packets(TURNS)
    last_answer = max(i for i, p in enumerate(packets) if p[TCP].sport == 8080 and p.haslayer(Raw))
    wrpcap(str(tmp_path / "gap.pcap"), packets[:last_answer - 1] + packets[last_answer:])
    gapped = read_pcap(tmp_path / "gap.pcap")
    assert summary(gapped.exchanges) == [*EXPECTED[:4], ("GET", "/deflate", b"", None)]
    assert gapped.exchanges[-1].tags == {"error": "no response in the capture"}
    assert gapped.notes["unparseable_streams"] == {"a gap in the capture": 1}

    wrpcap(str(tmp_path / "full.pcap"), packets)
    whole = (tmp_path / "full.pcap").read_bytes()
    (tmp_path / "cut.pcap").write_bytes(whole[: len(whole) * 2 // 3])  # the file itself ends mid-packet
    cut = read_pcap(tmp_path / "cut.pcap")
    assert 0 < len(cut.exchanges) < len(EXPECTED) + 1
    assert summary(cut.exchanges)[:2] == EXPECTED[:2]


def test_a_capture_cut_mid_packet_is_said_in_our_words_not_scapys(tmp_path: Path) -> None:
    wrpcap(str(tmp_path / "full.pcap"), Conversation().packets(TURNS))
    whole = (tmp_path / "full.pcap").read_bytes()
    offset = 24  # the file header; then each packet: a 16-byte record header (captured length at 8) and its data
    while offset + 16 + int.from_bytes(whole[offset + 8 : offset + 12], "little") < len(whole) * 2 // 3:
        offset += 16 + int.from_bytes(whole[offset + 8 : offset + 12], "little")
    (tmp_path / "cut.pcap").write_bytes(whole[: offset + 20])  # inside a packet's data
    result = run_import("cut.pcap", "-o", "c.jsonl.zst", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr and "scapy" not in result.stderr.lower()
    assert "'packet cut short by the end of the file': 1" in result.stderr


def test_non_http_streams_are_counted_not_fatal_and_pcapng_reads_too(tmp_path: Path) -> None:
    http = Conversation().packets(TURNS[:1])
    postgres_startup = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
    binary = Conversation(client_port=40001, server_port=5432).packets([(postgres_startup, b"N")], start=T0 + 1)
    wrpcapng(str(tmp_path / "mixed.pcapng"), http + binary)
    capture = read_pcap(tmp_path / "mixed.pcapng")
    assert summary(capture.exchanges) == EXPECTED[:1]
    assert capture.notes["unparseable_streams"] == {"not HTTP/1.x": 1}


def test_cli_detects_the_kind_by_content_sanitizes_and_reports(tmp_path: Path) -> None:
    wrpcap(str(tmp_path / "capture.har"), Conversation().packets(TURNS))  # a misleading name
    result = run_import("capture.har", "-o", "c.jsonl.zst", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "imported 5 exchanges" in result.stderr
    reader = CorpusReader(tmp_path / "c.jsonl.zst")
    assert summary(list(reader)) == EXPECTED
    assert reader.header["source"] == "pcap:capture.har" and reader.end["tcp_connections"] == 1
    assert b"pcapsecret1" not in decompressed_bytes(tmp_path / "c.jsonl.zst")

    (tmp_path / "junk.bin").write_bytes(b"\x00\x01 nothing we know")
    junk = run_import("junk.bin", "-o", "j.jsonl.zst", cwd=tmp_path)
    assert junk.returncode == 2
    assert junk.stderr == (
        "replaydiff: error: junk.bin: not a HAR, pcap, pcapng or mitmproxy flow file (judged by its content)\n"
    )


# --- real loopback traffic -----------------------------------------------------------------------


def test_real_loopback_traffic_captured_with_scapys_sniffer(tmp_path: Path, upstream: str) -> None:  # noqa: F811
    port = int(upstream.rsplit(":", 1)[1])
    bodies = [random.Random(n).randbytes(n * 3000) for n in range(1, 4)]
    with sniffing_lo(port, fins=4) as ours:  # two connections, each closed both ways
        with httpx.Client(base_url=upstream, trust_env=False) as client:  # one connection, keep-alive
            for body in bodies:
                answer = client.post("/echo", content=body, headers={"X-Api-Key": "loopsecret"})
                assert answer.content == f"stored {len(body)} bytes".encode()
        with httpx.Client(base_url=upstream, trust_env=False) as other:
            other.post("/other", content=b"second connection")
    wrpcap(str(tmp_path / "lo.pcap"), ours)  # PF_PACKET on lo sees each packet twice: real duplicates
    result = run_import("lo.pcap", "-o", "lo.jsonl.zst", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    exchanges = list(CorpusReader(tmp_path / "lo.jsonl.zst"))
    assert [(e.request.path, e.request.body) for e in exchanges] == [
        *(("/echo", body) for body in bodies),
        ("/other", b"second connection"),
    ]
    assert all(e.response and e.response.body == f"stored {len(e.request.body)} bytes".encode() for e in exchanges)
    assert len({e.session for e in exchanges}) == 2
    assert dict(exchanges[0].request.headers)["X-Api-Key"] not in (MASK, ""), "pseudonymized"
