"""CPU per HTTP/2 request of the replay's client codec (`replayer.http2.H2Session`) against h2's client state
machine doing the same work, in the same process and run (issue 15).

Per request: open a stream with a GET's header fields, take the bytes to send, feed the answer (HEADERS and
DATA with END_STREAM, as nghttpd answers a small file) and collect it. No socket: this is the codec's share of
a replayed request, the part the hand-written framing replaced. The reference is h2 configured as the replay
used it (no header validation, hpackmemo's coders), driven the way the replay drove it.

Run: .venv/bin/python bench/h2_codec.py [--requests N]
"""

from __future__ import annotations

import argparse
import time

import h2.config
import h2.connection
import h2.events
import h2.settings

from replaydiff.replayer import h2frames as f
from replaydiff.replayer.hpackmemo import MemoDecoder, StatelessEncoder
from replaydiff.replayer.http2 import RECEIVE_WINDOW, H2Session

FIELDS = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"shop.internal"), (b":path", b"/item.json"),
          (b"accept", b"application/json"), (b"user-agent", b"bench"), (b"x-session", b"s1")]
BODY = b'{"id": 1, "name": "item 1"}'


def answer_bytes(stream_id: int, block: bytes) -> bytes:
    return (f.frame(f.HEADERS, f.END_HEADERS, stream_id, block)
            + f.frame(f.DATA, f.END_STREAM, stream_id, BODY))  # fmt: skip


def blocks() -> tuple[bytes, bytes]:
    """The first answer's header block (with the table size update), and every later one's."""
    fields = [(b":status", b"200"), (b"content-type", b"application/json"), (b"content-length", b"27")]
    encoder = StatelessEncoder()
    return encoder.encode(fields), encoder.encode(fields)


def answer_stream(requests: int) -> list[bytes]:
    """The bytes of each stream's answer, in the order the streams are started (ids 1, 3, 5, ...)."""
    first, later = blocks()
    return [answer_bytes(1 + 2 * n, first if n == 0 else later) for n in range(requests)]


def ours(requests: int) -> float:
    session = H2Session(1 << 20, label="the target")
    session.data_to_send()
    session.feed(f.settings({f.MAX_CONCURRENT_STREAMS: 1 << 20}))
    answers = answer_stream(requests)
    started = time.process_time()
    for n in range(requests):
        session.start(FIELDS, b"")
        session.data_to_send()
        session.feed(answers[n])
        session.data_to_send()
    return time.process_time() - started


def h2_reference(requests: int) -> float:
    config = h2.config.H2Configuration(client_side=True, header_encoding=None, validate_outbound_headers=False,
                                       normalize_outbound_headers=False, validate_inbound_headers=False,
                                       normalize_inbound_headers=False)  # fmt: skip
    conn = h2.connection.H2Connection(config)
    codes = h2.settings.SettingCodes
    conn.local_settings = h2.settings.Settings(client=True, initial_values={
        codes.ENABLE_PUSH: 0, codes.MAX_CONCURRENT_STREAMS: 100, codes.MAX_HEADER_LIST_SIZE: 1 << 16,
        codes.INITIAL_WINDOW_SIZE: RECEIVE_WINDOW, codes.HEADER_TABLE_SIZE: 0})  # fmt: skip
    conn.encoder = StatelessEncoder()
    conn.decoder = MemoDecoder(1 << 16)
    conn.decoder.max_allowed_table_size = 0
    conn.initiate_connection()
    conn.increment_flow_control_window(RECEIVE_WINDOW - 65_535)
    conn.data_to_send()
    conn.receive_data(f.settings({f.MAX_CONCURRENT_STREAMS: 1 << 20}))
    answers = answer_stream(requests)
    started = time.process_time()
    for n in range(requests):
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, FIELDS, end_stream=True)
        conn.data_to_send()
        for event in conn.receive_data(answers[n]):  # what the replay's session did with each event
            if isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        conn.data_to_send()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    args = parser.parse_args()
    ours(1000), h2_reference(1000)  # warm both
    mine, theirs = ours(args.requests), h2_reference(args.requests)
    print(f"{args.requests} requests, CPU per request: H2Session {mine / args.requests * 1e6:.1f} µs, "
          f"h2 {theirs / args.requests * 1e6:.1f} µs; ÷ h2 {mine / theirs:.2f}")


if __name__ == "__main__":
    main()
