"""The fastest HTTP/2 client this interpreter runs: the ceiling any Python replay could reach (issue 15, part a).

Not replaydiff: a loop on uvloop and asyncio protocols that sends one
pre-encoded GET (only its stream id changes), reads frames with one `struct`
unpack each (frame numbers and builders from `replayer/h2frames.py`), decodes each answer's header block once per distinct block (the
peer may keep no hpack table: SETTINGS_HEADER_TABLE_SIZE 0, the replay's
trick), counts answers below 400 and sends the next GET at once (after a
GOAWAY, on a new connection). No future, no
record, no fan-out, no timeout: what is left of a request's cost is Python's
own per-frame work and the kernel's. `http2_replay.py` runs it beside h2load
and the replay, same server, same connections and streams.

Run: .venv/bin/python bench/h2_bare_client.py URL CONNECTIONS STREAMS SECONDS  (prints answered requests/s)
"""

from __future__ import annotations

import argparse
import asyncio
import time
from urllib.parse import urlsplit

import hpack
import uvloop

from replaydiff.replayer import h2frames as f
from replaydiff.replayer.http2 import LAST_STREAM_ID

OPENING = f.PREFACE + f.settings({f.HEADER_TABLE_SIZE: 0}) + f.window_update(0, f.MAX_WINDOW - f.DEFAULT_WINDOW)
"""The preface, no hpack table for the peer, and a connection window that never runs out in a run."""


def get_block(authority: str, path: str) -> bytes:
    """A GET's header block: static-table fields and literals never indexed."""
    return hpack.Encoder().encode(
        [hpack.NeverIndexedHeaderTuple(name, value)
         for name, value in ((":method", "GET"), (":scheme", "http"), (":path", path), (":authority", authority))]
    )


class BareClient(asyncio.Protocol):
    def __init__(self, block: bytes, streams: int, end: float, counts: list[int]) -> None:
        self._frame_head = f.frame_header(len(block), f.HEADERS, f.END_STREAM | f.END_HEADERS, 0)[:5]
        self._block = block
        self._streams = streams
        self._end = end
        self._counts = counts
        self._next_id = 1
        self._buffer = b""
        self._decoder = hpack.Decoder()
        self._blocks: dict[bytes, int] = {}
        self._status: dict[int, int] = {}
        self._transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Done when the time is up, or a GOAWAY came, and every stream sent was answered (or refused)."""
        self._open: set[int] = set()
        self._goaway = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        transport.write(OPENING + b"".join(self._get() for _ in range(self._streams)))  # type: ignore[attr-defined]

    def _get(self) -> bytes:
        stream_id, self._next_id = self._next_id, self._next_id + 2
        self._open.add(stream_id)
        return self._frame_head + stream_id.to_bytes(4, "big") + self._block

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        offset, size, out = 0, len(buffer), []
        now_done = time.perf_counter() >= self._end
        unpack = f.FRAME_HEADER.unpack_from
        while size - offset >= 9:
            length_type, flags, stream_id = unpack(buffer, offset)
            length, kind = length_type >> 8, length_type & 0xFF
            if size - offset - 9 < length:
                break
            payload = buffer[offset + 9:offset + 9 + length]
            offset += 9 + length
            if kind == f.HEADERS:
                status = self._blocks.get(payload)
                if status is None:
                    headers = dict(self._decoder.decode(payload))
                    status = self._blocks[payload] = int(headers[":status"])
                self._status[stream_id] = status
            elif kind == f.SETTINGS and not flags & f.ACK:
                out.append(f.SETTINGS_ACK)
            elif kind == f.GOAWAY:  # e.g. hypercorn's 1,000 requests per connection: the caller opens another
                self._goaway = True
                last_stream_id = int.from_bytes(payload[:4], "big") & LAST_STREAM_ID
                self._open = {stream for stream in self._open if stream <= last_stream_id}
            if flags & f.END_STREAM and kind in (f.HEADERS, f.DATA):
                self._open.discard(stream_id)
                if self._status.pop(stream_id, 500) < 400:
                    self._counts[0] += 1
                if not now_done and not self._goaway:
                    out.append(self._get())
        self._buffer = buffer[offset:]
        if out and self._transport is not None:
            self._transport.write(b"".join(out))
        if (now_done or self._goaway) and not self._open and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def run(url: str, connections: int, streams: int, seconds: float) -> float:
    parts = urlsplit(url)
    block = get_block(parts.netloc, parts.path or "/")
    counts = [0]
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    end = started + seconds

    async def one_connection_at_a_time() -> None:
        while time.perf_counter() < end:
            transport, protocol = await loop.create_connection(
                lambda: BareClient(block, streams, end, counts), parts.hostname, parts.port)
            await protocol.done
            transport.close()

    await asyncio.gather(*(one_connection_at_a_time() for _ in range(connections)))
    return counts[0] / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="http:// URL of a GET the server answers (h2c, prior knowledge)")
    parser.add_argument("connections", type=int)
    parser.add_argument("streams", type=int, help="streams in flight per connection")
    parser.add_argument("seconds", type=float)
    args = parser.parse_args()
    print(uvloop.run(run(args.url, args.connections, args.streams, args.seconds)))


if __name__ == "__main__":
    main()
