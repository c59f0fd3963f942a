"""pcap import speed: packets/s end to end, against a plain `RawPcapReader` pass over the same file.

The capture is synthetic but shaped like real keep-alive API traffic: many
connections interleaved, each with a handshake, several request/response turns
cut into segments, pure ACKs, and a FIN. It is written with `struct` (building
it with scapy would take longer than the benchmark). Three timings:
- `raw`: iterate `RawPcapReader` and do nothing (the ceiling: file reading in scapy);
- `parse`: `read_pcap`, packets → reassembled streams → exchanges;
- `import`: `replaydiff import` as a function: parse, sanitize, tag retries, write the corpus.

Run: .venv/bin/python bench/pcap_import.py [PACKETS]   (default 200,000)
"""

from __future__ import annotations

import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from scapy.utils import RawPcapReader

from replaydiff.recorder.importing import import_capture
from replaydiff.recorder.pcap import read_pcap
from replaydiff.recorder.retries import RetryTagger
from replaydiff.recorder.sanitize import Sanitizer

_ETHER = b"\x00" * 12 + b"\x08\x00"
_TURNS = 4
_REQUEST = (
    b"GET /api/products/%d?page=2 HTTP/1.1\r\nHost: shop.local\r\nAccept: application/json\r\n"
    b"Authorization: Bearer abcdef0123456789\r\nUser-Agent: bench/1.0\r\n\r\n"
)
_BODY = b'{"items": [' + b",".join(b'{"id": %d, "name": "item %d", "price": 1.5}' % (i, i) for i in range(40)) + b"]}"
_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(_BODY) + _BODY
_MSS = 536


def _packet(src: int, sport: int, dst: int, dport: int, seq: int, flags: int, payload: bytes) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000, 64, 6, 0,
                     src.to_bytes(4, "big"), dst.to_bytes(4, "big"))
    return _ETHER + ip + tcp + payload


def _connection(number: int) -> Iterator[bytes]:
    client, server, port = 0x0A000001 + number % 200, 0x0A00FF01, 20000 + number % 40000
    c_seq, s_seq = 1000, 9000
    yield _packet(client, port, server, 80, c_seq - 1, 0x02, b"")
    yield _packet(server, 80, client, port, s_seq - 1, 0x12, b"")
    for turn in range(_TURNS):
        request = _REQUEST % (number * _TURNS + turn)
        yield _packet(client, port, server, 80, c_seq, 0x18, request)
        c_seq += len(request)
        for offset in range(0, len(_RESPONSE), _MSS):
            yield _packet(server, 80, client, port, s_seq + offset, 0x18, _RESPONSE[offset : offset + _MSS])
            yield _packet(client, port, server, 80, c_seq, 0x10, b"")  # the ACK
        s_seq += len(_RESPONSE)
    yield _packet(client, port, server, 80, c_seq, 0x11, b"")


def write_capture(path: Path, packets: int) -> int:
    """Interleaves connections 8 at a time, like a busy server; returns the packet count written."""
    written = 0
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        number = 0
        while written < packets:
            streams = [_connection(number + i) for i in range(8)]
            number += 8
            while streams:
                for stream in list(streams):
                    data = next(stream, None)
                    if data is None:
                        streams.remove(stream)
                        continue
                    ts = 1_700_000_000 + written // 1000
                    out.write(struct.pack("<IIII", ts, (written % 1000) * 1000, len(data), len(data)) + data)
                    written += 1
    return written


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _raw_pass(path: Path) -> None:
    with RawPcapReader(str(path)) as reader:
        for _ in reader:
            pass


def main(packets: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        capture, corpus = Path(tmp) / "bench.pcap", Path(tmp) / "bench.jsonl.zst"
        count = write_capture(capture, packets)
        raw = _timed(lambda: _raw_pass(capture))
        parse = _timed(lambda: read_pcap(capture))
        imported = _timed(
            lambda: import_capture(capture, corpus, sanitizer=Sanitizer(), retries=RetryTagger())
        )
        exchanges = len(read_pcap(capture).exchanges)
        size = capture.stat().st_size
    print(f"{count:,} packets, {exchanges:,} exchanges, {size / 1e6:.0f} MB")
    print(f"raw RawPcapReader pass  {count / raw:>12,.0f} packets/s")
    print(f"read_pcap (to exchanges){count / parse:>12,.0f} packets/s   {parse / raw:.1f}x the raw pass")
    print(f"import (sanitize, write){count / imported:>12,.0f} packets/s   {imported / raw:.1f}x the raw pass")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
