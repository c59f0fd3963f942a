"""pcap and pcapng import: packets → TCP streams → HTTP/1.x and cleartext HTTP/2 exchanges.

Speed: scapy's dissectors build a Python object per layer and run below 10k
packets/s, so scapy only reads the file (`RawPcapReader`, which also opens
pcapng) and we take the link, IP and TCP headers apart with `struct`, touching
each packet once. `bench/pcap_import.py` measures the result.

TCP reassembly, per direction: a segment is placed by its sequence number
relative to the initial one (from the SYN, or the first segment seen when the
capture started mid-connection). Segments ahead of the stream wait until the
gap before them fills (out of order); data the stream already has is ignored
(retransmissions, and the overlapping part of overlapping segments, where the
first copy wins). A gap that never fills ends the usable stream there.

Each exchange's session is its connection, and `Capture.clients` gives each
connection's client address: `recorder.sessions` then groups connections into
clients, as the recorder does. The client is the side that sent the SYN, or, when
the handshake is not in the capture, the side whose data starts like an HTTP
request (or with the HTTP/2 preface): HTTP is found on any port by content.
A stream that starts with the HTTP/2 connection preface (cleartext HTTP/2 with
prior knowledge, as gRPC talks) is read by `recorder.http2`: one exchange per
HTTP/2 stream, with its trailers, stored as the recorder stores HTTP/2. Streams
that are not HTTP, or break off, are counted in the notes, never fatal.
"""

from __future__ import annotations

import bisect
import logging
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from scapy.error import Scapy_Exception, log_runtime
from scapy.utils import RawPcapReader

from replaydiff.corpora import Exchange, Request, Response, header_value
from replaydiff.corpora.content import decoded_content
from replaydiff.recorder.http1 import Message, looks_like_requests, looks_like_responses, parse_requests, parse_responses
from replaydiff.recorder.http2 import Half, Stream, parse_streams, starts_like_http2
from replaydiff.recorder.importing import Capture, UnreadableInput

_MASK32 = 0xFFFFFFFF
_HALF = 1 << 31
_SYN, _RST, _FIN, _ACK = 0x02, 0x04, 0x01, 0x10
_ETHERNET, _NULL, _RAW, _LINUX_SLL, _LINUX_SLL2, _IPV4, _IPV6 = 1, 0, 101, 113, 276, 228, 229
_LINK_HEADER = {_ETHERNET: 14, _NULL: 4, _RAW: 0, 12: 0, 14: 0, _LINUX_SLL: 16, _LINUX_SLL2: 20, _IPV4: 0, _IPV6: 0}
_VLAN = (0x8100, 0x88A8)
_UNPACK_IPV4 = struct.Struct("!BxHxxHxB2x4s4s").unpack_from
"""Version and header length, total length, flags and fragment offset, protocol, source, destination."""
_UNPACK_IPV6 = struct.Struct("!4xHB17x16s16s").unpack_from
"""Payload length, next header, source, destination."""
_UNPACK_TCP = struct.Struct("!HHIIBB").unpack_from


class _Direction:
    """One direction of a TCP connection: the bytes in order, and when each run of them arrived."""

    __slots__ = ("isn", "guessed", "next", "data", "pending", "ends", "times")

    def __init__(self) -> None:
        self.isn: int | None = None
        self.guessed = False
        """The start is the first segment seen, not a SYN: an earlier segment arriving later moves it back."""
        self.next = 0
        self.data = bytearray()
        self.pending: dict[int, tuple[bytes, float]] = {}
        self.ends: list[int] = []
        """Stream offset after each appended run, with `times` the packet timestamp that brought it."""
        self.times: list[float] = []

    def start_at_syn(self, seq: int) -> None:
        self.isn, self.guessed = (seq + 1) & _MASK32, False

    def add(self, seq: int, payload: bytes, ts: float) -> None:
        if self.isn is None:
            self.isn, self.guessed = seq, True
        offset = (seq - self.isn) & _MASK32
        if offset >= _HALF:
            if not self.guessed:
                return  # before the SYN: nothing of this connection
            self._move_start_back(seq)
            offset = 0
        end = offset + len(payload)
        if end <= self.next:
            return
        if offset > self.next:
            held = self.pending.get(offset)
            if held is None or len(held[0]) < len(payload):
                self.pending[offset] = (payload, ts)
            return
        self._append(payload[self.next - offset :], ts)
        while self.pending:
            start = min(self.pending)
            if start > self.next:
                break
            held_payload, held_ts = self.pending.pop(start)
            if start + len(held_payload) > self.next:
                self._append(held_payload[self.next - start :], held_ts)

    def _move_start_back(self, seq: int) -> None:
        """Re-files what was assembled as segments waiting after the new, earlier start."""
        shift = (self.isn - seq) & _MASK32  # type: ignore[operator]  # isn is set once data arrived
        held = {offset + shift: segment for offset, segment in self.pending.items()}
        start = 0
        for end, ts in zip(self.ends, self.times, strict=True):
            held[start + shift] = (bytes(self.data[start:end]), ts)
            start = end
        self.isn, self.next, self.data, self.ends, self.times, self.pending = seq, 0, bytearray(), [], [], held

    def _append(self, payload: bytes, ts: float) -> None:
        self.data += payload
        self.next += len(payload)
        self.ends.append(self.next)
        self.times.append(ts)

    def time_at(self, offset: int) -> float:
        """When the byte at `offset` arrived."""
        index = bisect.bisect_right(self.ends, offset)
        return self.times[min(index, len(self.times) - 1)]


@dataclass(slots=True)
class _Connection:
    number: int
    a: tuple[bytes, int]
    """The endpoint that sent the first packet we saw; the client unless the handshake says otherwise."""
    b: tuple[bytes, int]
    client_is_a: bool | None = None
    """Known from the SYN; None until then (decided by content later)."""
    a_to_b: _Direction = field(default_factory=_Direction)
    b_to_a: _Direction = field(default_factory=_Direction)
    closed: bool = False


@dataclass(slots=True)
class _Stats:
    packets: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def read_pcap(path: Path) -> Capture:
    connections, stats = _connections(path)
    exchanges: list[Exchange] = []
    clients: dict[str, str] = {}
    notes: Counter[str] = Counter()
    for connection in connections:
        found, problem = _exchanges(connection, clients)
        exchanges += found
        if problem:
            notes[problem] += 1
    exchanges.sort(key=lambda exchange: exchange.start_us)
    epoch = exchanges[0].start_us if exchanges else 0
    for exchange in exchanges:
        exchange.start_us -= epoch
    return Capture(
        exchanges,
        {
            "packets": stats.packets,
            "tcp_connections": len(connections),
            **({"unparseable_streams": dict(notes)} if notes else {}),
            **({"skipped_packets": dict(stats.skipped)} if stats.skipped else {}),
        },
        clients,
    )


# --- packets → connections ------------------------------------------------------------------------


def _connections(path: Path) -> tuple[list[_Connection], _Stats]:
    try:
        reader = RawPcapReader(str(path))
    except (Scapy_Exception, OSError, EOFError) as exc:
        raise UnreadableInput(f"{path}: not a readable pcap or pcapng file ({exc})") from None
    stats = _Stats()
    table: dict[tuple[tuple[bytes, int], tuple[bytes, int]], _Connection] = {}
    connections: list[_Connection] = []
    with reader, _scapy_warnings_counted(stats):
        pcap_link = getattr(reader, "linktype", None)
        scale = 1e-9 if getattr(reader, "nano", False) else 1e-6
        for data, meta in reader:
            stats.packets += 1
            segment = _tcp_segment(data, meta.linktype if pcap_link is None else pcap_link, stats)
            if segment is None:
                continue
            src, sport, dst, dport, seq, flags, payload = segment
            source, destination = (src, sport), (dst, dport)
            connection = _connection_for(source, destination, flags, table, connections)
            from_a = connection.a == source
            direction = connection.a_to_b if from_a else connection.b_to_a
            if flags & _SYN:
                direction.start_at_syn(seq)
                if connection.client_is_a is None:
                    connection.client_is_a = from_a != bool(flags & _ACK)
            if payload:  # the timestamp only matters for data: most packets of a capture are pure ACKs
                if pcap_link is not None:
                    ts = meta.sec + meta.usec * scale
                else:
                    ts = ((meta.tshigh << 32) + meta.tslow) / meta.tsresol
                direction.add(seq, payload, ts)
            if flags & (_FIN | _RST):
                connection.closed = True
    return connections, stats


def _connection_for(
    source: tuple[bytes, int], destination: tuple[bytes, int], flags: int,
    table: dict[tuple[tuple[bytes, int], tuple[bytes, int]], _Connection], connections: list[_Connection],
) -> _Connection:
    """The connection a packet belongs to, by its two endpoints; a new SYN after a close starts a new one."""
    key = (source, destination) if source < destination else (destination, source)
    connection = table.get(key)
    if connection is None or (flags & _SYN and not flags & _ACK and connection.closed):
        connection = table[key] = _Connection(len(connections), source, destination)
        connections.append(connection)
    return connection


class _CountScapyWarnings(logging.Filter):
    """scapy says `WARNING: Pcap: packet has been truncated` on stderr, in its words, when a packet's recorded
    length runs past the end of the file (a capture cut while being written); we count it with our notes."""

    def __init__(self, stats: _Stats) -> None:
        super().__init__()
        self._stats = stats

    def filter(self, record: logging.LogRecord) -> bool:
        if "truncated" in record.getMessage():
            self._stats.skipped["packet cut short by the end of the file"] += 1
            return False
        return True


@contextmanager
def _scapy_warnings_counted(stats: _Stats) -> Iterator[None]:
    counting = _CountScapyWarnings(stats)
    log_runtime.addFilter(counting)
    try:
        yield
    finally:
        log_runtime.removeFilter(counting)


def _tcp_segment(
    data: bytes, link: int, stats: _Stats
) -> tuple[bytes, int, bytes, int, int, int, bytes] | None:
    """(src, sport, dst, dport, seq, flags, payload) of a TCP packet, else None (counted by reason)."""
    network = _network_layer(data, link, stats)
    if network is None:
        return None
    transport = _ip(data, *network, stats)
    if transport is None:
        return None
    src, dst, start, end = transport
    if end - start < 20 or len(data) < start + 20:
        stats.skipped["truncated packet"] += 1
        return None
    sport, dport, seq, _ack, offset, flags = _UNPACK_TCP(data, start)
    return src, sport, dst, dport, seq, flags, data[start + (offset >> 4) * 4 : end]


def _network_layer(data: bytes, link: int, stats: _Stats) -> tuple[int, int] | None:
    """(ethertype, offset of the IP header) under the link layer's header (and any VLAN tags)."""
    start = _LINK_HEADER.get(link)
    if start is None:
        stats.skipped[f"link type {link}"] += 1
        return None
    if link == _ETHERNET:
        ethertype = data[12] << 8 | data[13] if len(data) >= start else 0
        while ethertype in _VLAN and len(data) >= start + 4:
            ethertype = data[start + 2] << 8 | data[start + 3]
            start += 4
    elif link == _LINUX_SLL:
        ethertype = int.from_bytes(data[14:16], "big")
    elif link == _LINUX_SLL2:
        ethertype = int.from_bytes(data[0:2], "big")
    elif link == _NULL:
        family = int.from_bytes(data[0:4], "little") if data[0] else int.from_bytes(data[0:4], "big")
        ethertype = 0x0800 if family == socket.AF_INET else 0x86DD
    else:
        ethertype = 0x0800 if data[start] >> 4 == 4 else 0x86DD
    return ethertype, start


def _ip(data: bytes, ethertype: int, start: int, stats: _Stats) -> tuple[bytes, bytes, int, int] | None:
    """(source, destination, start and end of the TCP segment) of an unfragmented IPv4 or IPv6 TCP packet."""
    if ethertype == 0x0800:
        if len(data) < start + 20:
            stats.skipped["truncated packet"] += 1
            return None
        version_ihl, total, fragment, protocol, src, dst = _UNPACK_IPV4(data, start)
        if protocol != 6:
            stats.skipped["not TCP"] += 1
            return None
        if fragment & 0x3FFF:
            stats.skipped["IP fragment"] += 1
            return None
        return src, dst, start + (version_ihl & 0x0F) * 4, start + total if total else len(data)
    if ethertype == 0x86DD:
        if len(data) < start + 40:
            stats.skipped["truncated packet"] += 1
            return None
        length, protocol, src, dst = _UNPACK_IPV6(data, start)
        if protocol != 6:
            stats.skipped["not TCP"] += 1
            return None
        return src, dst, start + 40, start + 40 + length
    stats.skipped["not IP"] += 1
    return None


# --- connections → exchanges ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Sides:
    """A connection seen from HTTP: which direction carries requests, which responses, and who serves."""

    id_prefix: str
    session: str
    client: str
    """The client's address."""
    upstream: _Direction
    downstream: _Direction
    server: tuple[bytes, int]

    def exchange(self, index: int, request: Message, response: Message | None) -> Exchange:
        started = self.upstream.time_at(request.first_byte)
        ended = self.downstream.time_at(response.end - 1) if response else self.upstream.time_at(request.end - 1)
        return Exchange(
            id=f"{self.id_prefix}.{index}",
            session=self.session,
            start_us=round(started * 1_000_000),
            duration_us=max(0, round((ended - started) * 1_000_000)),
            request=_request(request, self.server),
            response=_response(response) if response else None,
            tags={} if response else {"error": "no response in the capture"},
        )

    def http2_exchange(self, stream: Stream) -> Exchange:
        request, response = stream.request, stream.response
        started = self.upstream.time_at(request.first_byte)
        answered = response.headers and response.ended
        ended = self.downstream.time_at(response.end - 1) if answered else self.upstream.time_at(request.end - 1)
        tags = {}
        if stream.reset is not None:
            tags["error"] = f"HTTP/2 stream reset (error code {stream.reset})"
        elif not answered:
            tags["error"] = "no response in the capture"
        return Exchange(
            id=f"{self.id_prefix}.{stream.id}",
            session=self.session,
            start_us=round(started * 1_000_000),
            duration_us=max(0, round((ended - started) * 1_000_000)),
            request=_http2_request(request, self.server),
            response=_http2_response(response) if response.headers else None,
            tags=tags,
        )


def _exchanges(connection: _Connection, clients: dict[str, str]) -> tuple[list[Exchange], str | None]:
    """The exchanges of one connection, and why its stream could not be used to the end (None if it could);
    notes the connection's client address in `clients`."""
    if not connection.a_to_b.data and not connection.b_to_a.data:
        return [], None
    sides = _sides(connection)
    clients[sides.session] = sides.client
    if starts_like_http2(bytes(sides.upstream.data[:64])):
        streams, problem = parse_streams(bytes(sides.upstream.data), bytes(sides.downstream.data))
        gap = "a gap in the capture" if sides.upstream.pending or sides.downstream.pending else None
        return [sides.http2_exchange(stream) for stream in streams], gap or problem
    if not looks_like_requests(bytes(sides.upstream.data[:64])):
        return [], "not HTTP/1.x"
    requests, request_problem = parse_requests(bytes(sides.upstream.data))
    responses, response_problem = parse_responses(bytes(sides.downstream.data), [m.start[0] for m in requests])
    answers: list[Message | None] = [*responses, *[None] * (len(requests) - len(responses))]
    exchanges = [sides.exchange(index, *pair) for index, pair in enumerate(zip(requests, answers))]
    for earlier, later in zip(exchanges, exchanges[1:]):
        # A retransmitted first segment can carry a later timestamp; requests on one connection stay in order.
        later.start_us = max(later.start_us, earlier.start_us)
    gap = "a gap in the capture" if sides.upstream.pending or sides.downstream.pending else None
    return exchanges, gap or _problem_kind(request_problem or response_problem)


def _sides(connection: _Connection) -> _Sides:
    """The client sent the SYN; without a handshake in the capture, it is the side whose data reads as requests."""
    client_is_a = connection.client_is_a
    if client_is_a is None:
        client_data = bytes(connection.a_to_b.data[:64])
        client_is_a = (
            looks_like_requests(client_data)
            or starts_like_http2(client_data)
            or looks_like_responses(bytes(connection.b_to_a.data[:64]))
        )
    if client_is_a:
        upstream, downstream, client, server = connection.a_to_b, connection.b_to_a, connection.a, connection.b
    else:
        upstream, downstream, client, server = connection.b_to_a, connection.a_to_b, connection.b, connection.a
    number = connection.number
    return _Sides(f"c{number}", f"tcp{number}", _address(client[0]), upstream, downstream, server)


def _problem_kind(problem: str | None) -> str | None:
    """Counts group by kind, so notes stay short: the text before the offset."""
    return problem.split(" at stream offset")[0] if problem else None


def _request(message: Message, server: tuple[bytes, int]) -> Request:
    method, target, version = message.start
    host_header = header_value(message.headers, "host") or _address(server[0])
    if "://" in target:  # absolute form, as sent to a forward proxy
        _, _, rest = target.partition("://")
        host_header, slash, target = rest.partition("/")
        target = slash + target
    host = host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header.strip("[]")
    path, _, query = target.partition("?")
    return Request(
        method=method,
        scheme="http",  # only plaintext HTTP can be read from packets
        host=host,
        port=server[1],
        path=path or "/",
        query=query,
        http_version=version,
        headers=message.headers,
        body=message.body,
    )


def _response(message: Message) -> Response:
    version, status, reason = message.start
    try:
        body, original_encoding = decoded_content(message.body, message.headers)
    except ValueError:
        body, original_encoding = message.body, None  # kept as captured, like the proxy does
    return Response(
        status=int(status),
        reason=reason,
        http_version=version,
        headers=message.headers,
        body=body,
        original_encoding=original_encoding,
    )


def _http2_request(half: Half, server: tuple[bytes, int]) -> Request:
    """Pseudo-headers become the request's fields, as the recorder stores HTTP/2 (mitmproxy's layout)."""
    authority = half.pseudo(":authority") or header_value(half.fields, "host") or _address(server[0])
    host = authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority.strip("[]").split("]:")[0]
    path, _, query = (half.pseudo(":path") or "/").partition("?")
    return Request(
        method=half.pseudo(":method") or "GET",
        scheme=half.pseudo(":scheme") or "http",
        host=host,
        port=server[1],
        path=path,
        query=query,
        http_version="HTTP/2.0",
        headers=half.fields,
        body=bytes(half.body),
    )


def _http2_response(half: Half) -> Response:
    status = half.pseudo(":status") or ""
    headers = half.fields
    try:
        body, original_encoding = decoded_content(bytes(half.body), headers)
    except ValueError:
        body, original_encoding = bytes(half.body), None
    return Response(
        status=int(status) if status.isdigit() else 0,
        http_version="HTTP/2.0",
        headers=headers,
        body=body,
        original_encoding=original_encoding,
        trailers=half.trailers,
    )


def _address(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)
