"""HTTP/2 answers off the wire: h2's state machine (python-hyper) into `RawAnswer`s, and HTTP/2's own failures.

h2 owns no socket: `H2Session` feeds it the bytes a connection read and turns
its events into finished streams, each a `RawAnswer` (headers, body, trailers)
or the failure that ended it. The asyncio engine's multiplexing pool
(`replayer.aiopool2`) and the locust workers' blocking connections
(`replayer.blocking`) drive the same session, so both engines send the same
frames and read answers alike, as `AnswerReader` does for HTTP/1.1.

Failures are the HTTP/1.1 client's types, so the outcome mapping stays one
(`client.TargetCodec.outcome`): a stream reset by the target is a
`StreamReset` (kind `reset`, with its error code), a GOAWAY fails the streams
it did not process (`GoneAway`, kind `reset`), bytes that are not HTTP/2 are a
`ProtocolViolation`, and a stream without its whole answer in time a
`ReadTimeout`, cancelled with RST_STREAM so the connection stays usable.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from replaydiff.replayer.hpackmemo import MemoDecoder, StatelessEncoder
from replaydiff.replayer.http1 import (
    ConnectionReset,
    HttpClientError,
    ProtocolViolation,
    RawAnswer,
    ReadTimeout,
)

HTTP2 = "HTTP/2.0"
"""How the corpus names the version (mitmproxy's spelling)."""

INITIAL_STREAMS = 100
"""Streams opened at once on a connection before the peer's SETTINGS say how many it takes: h2 assumes no
limit until then, and 100 is the smallest value RFC 9113 recommends a peer allow."""

RECEIVE_WINDOW = 1 << 24
"""Our receive window, per stream and for the connection: large, so a big answer never waits on a window
update from a replayer busy with other streams."""

LAST_STREAM_ID = 2**31 - 1


def is_http2(http_version: str) -> bool:
    return http_version.upper().startswith("HTTP/2")


def check_alpn(chosen: str | None) -> None:
    """A TLS connection for HTTP/2 must have agreed on `h2` in its handshake."""
    if chosen != "h2":
        raise ProtocolViolation(f"the target does not speak HTTP/2 over TLS (ALPN chose {chosen or 'nothing'})")


def preface_unanswered(label: str, timeout_s: float) -> ProtocolViolation:
    return ProtocolViolation(
        f"{label} did not answer the HTTP/2 connection preface within {timeout_s:g} s; is it an HTTP/2 server?"
    )


class StreamReset(ConnectionReset):
    """The target ended the stream with RST_STREAM before its answer was complete."""


class GoneAway(ConnectionReset):
    """The target sent GOAWAY: the streams in flight on that connection ended without their answer."""


def _code_name(code: int) -> str:
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return f"error code {code:#x}"


@dataclass(slots=True)
class _Stream:
    answer: RawAnswer
    sent_at: float
    """time.monotonic() when the request left: a whole answer must arrive within the timeout from here."""
    body: memoryview
    """What is left to send of the request body, waiting for the peer's flow-control window."""


class H2Session:
    """One client connection's HTTP/2 state: start streams, feed what the connection read, collect finished ones.

    After `start`, `feed` or `expire`, `data_to_send` has the bytes to write."""

    def __init__(self, max_body: int, *, label: str) -> None:
        config = h2.config.H2Configuration(
            client_side=True, header_encoding=None,
            # the requests are built here, lower-case and without connection headers: checking them again per
            # request is h2's most expensive step, and a replay must send what was recorded anyway
            validate_outbound_headers=False, normalize_outbound_headers=False,
            # and the answers are recorded as they came, for the diff to judge, not refused for their form
            validate_inbound_headers=False, normalize_inbound_headers=False,
        )  # fmt: skip
        self._conn = h2.connection.H2Connection(config)
        # In the preface's SETTINGS (as httpcore does): a setting changed later is in force only once the peer
        # acknowledges it, and h2 would count our windows by it before the peer knew.
        codes = h2.settings.SettingCodes
        self._conn.local_settings = h2.settings.Settings(client=True, initial_values={
            codes.ENABLE_PUSH: 0, codes.MAX_CONCURRENT_STREAMS: 100, codes.MAX_HEADER_LIST_SIZE: 1 << 16,
            codes.INITIAL_WINDOW_SIZE: RECEIVE_WINDOW, codes.HEADER_TABLE_SIZE: 0,
        })  # fmt: skip
        # header fields and blocks encoded and decoded once (`replayer.hpackmemo`: hpack was most of the time)
        self._conn.encoder = StatelessEncoder()
        self._conn.decoder = MemoDecoder(self._conn.decoder.max_header_list_size)
        # h2 applies a local setting to its decoder only when it changes after the preface; this one is in the
        # preface, and the peer reads it before any request of ours, so it binds every answer
        self._conn.decoder.max_allowed_table_size = 0
        self._conn.initiate_connection()
        self._conn.increment_flow_control_window(RECEIVE_WINDOW - 65_535)
        self._max_body = max_body
        self._label = label
        self._streams: dict[int, _Stream] = {}
        self._stream_limit = INITIAL_STREAMS
        self._peer_spoke = False
        """Set by the first frame read: until then, bytes h2 cannot parse mean the peer is not HTTP/2."""
        self._first_bytes = bytearray()
        self.usable = True
        """False once the connection can take no new stream (GOAWAY, an error, stream ids used up)."""
        self.settled = False
        """The peer's SETTINGS arrived: its stream limit and windows are known."""
        self.failure: HttpClientError | None = None
        """What ended the connection, once something did."""

    # the caller's side
    @property
    def capacity(self) -> int:
        """How many more streams this connection may open now."""
        return max(0, self._stream_limit - len(self._streams)) if self.usable else 0

    @property
    def idle(self) -> bool:
        return not self._streams

    def start(self, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
        """Opens a stream with this request; its answer comes out of `feed` under the returned stream id (h2
        knows from `:method` that an answer to HEAD has no body)."""
        conn = self._conn
        stream_id = conn.get_next_available_stream_id()
        conn.send_headers(stream_id, headers, end_stream=not body)
        self._streams[stream_id] = _Stream(RawAnswer(http_version=HTTP2), time.monotonic(), memoryview(body))
        if body:
            self._send_body(stream_id)
        if stream_id >= LAST_STREAM_ID - 2:
            self.usable = False
        return stream_id

    def data_to_send(self) -> bytes:
        return self._conn.data_to_send()

    def feed(self, data: bytes) -> list[tuple[int, RawAnswer | HttpClientError]]:
        """The streams these bytes finished, each with its answer or failure."""
        if not self._peer_spoke and len(self._first_bytes) < 32:
            self._first_bytes += data[: 32 - len(self._first_bytes)]
        try:
            events = self._conn.receive_data(data)
        except h2.exceptions.H2Error as exc:
            return self.fail_all(self._not_http2() if not self._peer_spoke else ProtocolViolation(
                f"{self._label} broke the HTTP/2 protocol: {exc}"
            ))  # fmt: skip
        if events:
            self._peer_spoke = True
        finished: list[tuple[int, RawAnswer | HttpClientError]] = []
        for event in events:
            self._handle(event, finished)
        return finished

    def expire(self, now: float, timeout: float) -> list[tuple[int, RawAnswer | HttpClientError]]:
        """Fails (and cancels on the wire) each stream whose whole answer did not arrive within `timeout`."""
        late = [stream_id for stream_id, stream in self._streams.items() if now - stream.sent_at >= timeout]
        expired: list[tuple[int, RawAnswer | HttpClientError]] = []
        for stream_id in late:
            del self._streams[stream_id]
            try:
                self._conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            except h2.exceptions.ProtocolError:
                self.usable = False  # the connection itself is gone
            expired.append((stream_id, ReadTimeout.after(timeout)))
        return expired

    def fail_all(self, error: HttpClientError) -> list[tuple[int, RawAnswer | HttpClientError]]:
        """Every stream in flight ends with `error`; the connection takes no more."""
        self.usable = False
        self.failure = self.failure or error
        failed: list[tuple[int, RawAnswer | HttpClientError]] = [(stream_id, error) for stream_id in self._streams]
        self._streams.clear()
        return failed

    def closed(self) -> list[tuple[int, RawAnswer | HttpClientError]]:
        """The connection closed: what became of the streams still in flight."""
        if not self._peer_spoke:
            return self.fail_all(self._not_http2())
        return self.fail_all(ConnectionReset(f"{self._label} closed the connection before the answer was complete"))

    def _not_http2(self) -> ProtocolViolation:
        if not self._first_bytes:
            return ProtocolViolation(f"{self._label} closed the connection without answering the HTTP/2 preface")
        return ProtocolViolation(
            f"{self._label} does not speak HTTP/2: to the connection preface it answered {bytes(self._first_bytes)!r}"
        )

    # h2's events
    def _handle(self, event: h2.events.Event, finished: list[tuple[int, RawAnswer | HttpClientError]]) -> None:
        stream_id = getattr(event, "stream_id", 0)
        stream = self._streams.get(stream_id) if stream_id else None
        if isinstance(event, h2.events.DataReceived):
            if event.flow_controlled_length:
                self._conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
            if stream is not None:
                stream.answer.add_body(event.data, self._max_body)
        elif isinstance(event, h2.events.ResponseReceived):
            if stream is not None:
                answer = stream.answer
                answer.ttfb_ns = time.perf_counter_ns()
                for name, value in event.headers:
                    if name == b":status":
                        answer.status = int(value)
                    else:
                        answer.headers.append((name, value))
        elif isinstance(event, h2.events.TrailersReceived):
            if stream is not None:
                stream.answer.trailers.extend(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            if stream is not None:
                del self._streams[stream_id]
                if stream.body:  # answered before the whole request went: stop sending it, free the stream
                    self._conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                stream.answer.done_ns = time.perf_counter_ns()
                finished.append((stream_id, stream.answer))
        elif isinstance(event, h2.events.StreamReset):
            if stream is not None:
                del self._streams[stream_id]
                finished.append((stream_id, StreamReset(
                    f"{self._label} reset the stream ({_code_name(event.error_code)})"
                )))  # fmt: skip
        elif isinstance(event, h2.events.WindowUpdated):
            for waiting in [stream_id] if stream_id else list(self._streams):
                if waiting in self._streams and self._streams[waiting].body:
                    self._send_body(waiting)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.settled = True
            self._stream_limit = self._conn.remote_settings.max_concurrent_streams
            if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
                for waiting in list(self._streams):
                    if self._streams[waiting].body:
                        self._send_body(waiting)
        elif isinstance(event, h2.events.ConnectionTerminated):
            finished.extend(self._gone_away(event))

    def _gone_away(self, event: h2.events.ConnectionTerminated) -> Iterable[tuple[int, HttpClientError]]:
        """h2 closes its state machine on any GOAWAY, so even the streams the peer said it would still answer
        (ids up to `last_stream_id`) cannot be read on: each fails, saying whether the target processed it."""
        self.usable = False
        code = _code_name(event.error_code)
        self.failure = self.failure or GoneAway(f"{self._label} sent GOAWAY ({code})")
        last = event.last_stream_id
        for stream_id in list(self._streams):
            del self._streams[stream_id]
            if last is not None and stream_id > last:
                yield stream_id, GoneAway(f"{self._label} sent GOAWAY ({code}) without processing the stream")
            else:
                yield stream_id, GoneAway(f"{self._label} sent GOAWAY ({code}) before the answer was complete")

    def _send_body(self, stream_id: int) -> None:
        """As much of the body as the flow-control windows allow; the rest goes when the peer opens them."""
        stream = self._streams[stream_id]
        conn = self._conn
        while stream.body:
            size = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size, len(stream.body))
            if size <= 0:
                return
            chunk, stream.body = stream.body[:size], stream.body[size:]
            conn.send_data(stream_id, chunk.tobytes(), end_stream=not stream.body)
