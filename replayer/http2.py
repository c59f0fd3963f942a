"""HTTP/2 answers off the wire: a client connection's frames and streams (RFC 9113) into `RawAnswer`s, and
HTTP/2's own failures.

`H2Session` owns no socket: it is fed the bytes a connection read and hands
out finished streams, each a `RawAnswer` (headers, body, trailers) or the
failure that ended it, and the bytes to write. The asyncio engine's
multiplexing pool (`replayer.h2pool`) and the locust workers' blocking
connections (`replayer.blocking`) drive the same session, so both engines send
the same frames and read answers alike, as `AnswerReader` does for HTTP/1.1.

Framing and stream state are written here, over one buffer (frames as bytes
in `replayer.h2frames`), rather than on h2's state machine: h2 cost 50-75 µs
of CPU per request in events, frame objects and checks, most of what an
HTTP/2 request cost the replay (bench/README.md). Header blocks stay hpack's
(`replayer.hpackmemo`). What a client needs is small: it opens every stream
itself, takes no pushes, and records answers as they came.

Failures are the HTTP/1.1 client's types, so the outcome mapping stays one
(`client.TargetCodec.outcome`): a stream reset by the target is a
`StreamReset` (kind `reset`, with its error code), a GOAWAY fails the streams
it did not process (`GoneAway`, kind `reset`) and, when graceful (NO_ERROR: a
server draining), leaves the others to be answered, while one with an error
code fails every stream in flight; bytes that are not HTTP/2 are a
`ProtocolViolation`, and a stream without its whole answer in time a
`ReadTimeout`, cancelled with RST_STREAM so the connection stays usable.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from hpack import HPACKError

from replaydiff.replayer import h2frames as f
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
"""Streams opened at once on a connection before the peer's SETTINGS say how many it takes: 100 is the
smallest value RFC 9113 recommends a peer allow."""

NO_STREAM_LIMIT = 2**32 + 1
"""A peer whose SETTINGS name no MAX_CONCURRENT_STREAMS sets no limit (as h2 counts it)."""

RECEIVE_WINDOW = 1 << 24
"""Our receive window, per stream and for the connection: large, so a big answer never waits on a window
update from a replayer busy with other streams."""

WINDOW_UPDATE_AFTER = RECEIVE_WINDOW // 4
"""Bytes read on a stream, or on the connection, before we give them back with WINDOW_UPDATE: one update per
4 MiB, long before the peer's view of the window runs low."""

MAX_HEADER_LIST = 1 << 16
"""SETTINGS_MAX_HEADER_LIST_SIZE we announce; hpack's decoder refuses a longer answer header list."""

MAX_HEADER_BLOCK = 2 * MAX_HEADER_LIST
"""Encoded header block bytes gathered over CONTINUATION frames at most (encoded fields are not longer
than their decoded size)."""

LAST_STREAM_ID = 2**31 - 1

_OUR_SETTINGS = (
    f.PREFACE
    + f.settings({
        f.ENABLE_PUSH: 0, f.MAX_CONCURRENT_STREAMS: 100, f.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
        f.INITIAL_WINDOW_SIZE: RECEIVE_WINDOW, f.HEADER_TABLE_SIZE: 0,
    })  # fmt: skip
    + f.window_update(0, RECEIVE_WINDOW - f.DEFAULT_WINDOW)
)
"""The connection preface: in force from the first request (the peer reads them before it), so our windows
count from `RECEIVE_WINDOW` and answer header blocks cannot use a dynamic table."""

_HEAD = (b":method", b"HEAD")
# a request's HEADERS frame header, but for its length and stream id
_HEADERS_FRAME = f.HEADERS << 40 | f.END_HEADERS << 32
_HEADERS_LAST_FRAME = _HEADERS_FRAME | f.END_STREAM << 32
_DATA_LAST_FRAME = f.DATA << 40 | f.END_STREAM << 32


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
    """The target sent GOAWAY: a stream it did not process, or any stream in flight when the GOAWAY carries an
    error code, ended without its answer."""


class _Broken(Exception):
    """The peer broke the protocol (a connection error): the message says how, in a few words."""


class _Stream:
    """One request in flight."""

    __slots__ = ("answer", "sent_at", "body", "window", "head", "answered", "unacknowledged")

    def __init__(self, sent_at: float, window: int, head: bool) -> None:
        self.answer = RawAnswer(http_version=HTTP2)
        self.sent_at = sent_at
        """time.monotonic() when the request left: a whole answer must arrive within the timeout from here."""
        self.body: memoryview | bytes = b""
        """What is left to send of the request body, waiting for the peer's flow-control window."""
        self.window = window
        """What the peer lets us send on this stream now."""
        self.head = head
        """An answer to HEAD has no body."""
        self.answered = False
        """The final (not 1xx) headers came: a further header block is the trailers."""
        self.unacknowledged = 0
        """Bytes of DATA read and not yet given back with WINDOW_UPDATE."""


class H2Session:
    """One client connection's HTTP/2 state: start streams, feed what the connection read, collect finished ones.

    After `start`, `feed` or `expire`, `data_to_send` has the bytes to write."""

    def __init__(self, max_body: int, *, label: str) -> None:
        self._out = bytearray(_OUR_SETTINGS)
        self._in = bytearray()
        # header fields and blocks encoded and decoded once (`replayer.hpackmemo`: hpack was most of the time)
        self._encoder = StatelessEncoder()
        self._decoder = MemoDecoder(MAX_HEADER_LIST)
        self._decoder.max_allowed_table_size = 0  # HEADER_TABLE_SIZE 0 is in the preface: it binds every answer
        self._max_body = max_body
        self._label = label
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1
        self._stream_limit = INITIAL_STREAMS
        self._window = f.DEFAULT_WINDOW
        """What the peer lets us send on the connection now."""
        self._stream_window = f.DEFAULT_WINDOW
        """The peer's INITIAL_WINDOW_SIZE: each new stream's send window."""
        self._max_frame = f.DEFAULT_MAX_FRAME
        """The peer's MAX_FRAME_SIZE: the largest frame payload we may send."""
        self._unacknowledged = 0
        """Bytes of DATA read on the connection and not yet given back with WINDOW_UPDATE."""
        self._block = bytearray()
        self._block_stream = 0
        """The stream whose header block continues in CONTINUATION frames, or 0."""
        self._block_flags = 0
        self._ended = False
        """A GOAWAY with an error code came or the peer broke the protocol: nothing more is read or sent on this
        connection (after a graceful GOAWAY the streams it covers are still read)."""
        self._peer_spoke = False
        """Set by the peer's first frame, its SETTINGS: until then, bytes that are not a frame mean the peer is
        not HTTP/2."""
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
        """Opens a stream with this request; its answer comes out of `feed` under the returned stream id (an
        answer to HEAD, known from `:method`, has no body). The fields are sent as given: the replay builds them
        lower-case, without connection headers."""
        if self._ended or self.failure is not None:
            raise ConnectionReset(f"{self._label}'s HTTP/2 connection is closed: it takes no new stream")
        stream_id = self._next_id
        self._next_id = stream_id + 2
        block = self._encoder.encode(headers)
        if len(block) <= self._max_frame:
            self._out += (len(block) << 48 | (_HEADERS_FRAME if body else _HEADERS_LAST_FRAME) | stream_id).to_bytes(
                9, "big"
            )
            self._out += block
        else:
            self._continued(stream_id, block, bool(body))
        stream = self._streams[stream_id] = _Stream(time.monotonic(), self._stream_window, _HEAD in headers)
        if body:
            stream.body = memoryview(body)
            self._send_body(stream_id, stream)
        if stream_id >= LAST_STREAM_ID - 2:
            self.usable = False
        return stream_id

    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        data = bytes(self._out)
        self._out.clear()
        return data

    def feed(self, data: bytes) -> list[tuple[int, RawAnswer | HttpClientError]]:
        """The streams these bytes finished, each with its answer or failure."""
        if self._ended:
            return []
        if not self._peer_spoke and len(self._first_bytes) < 32:
            self._first_bytes += data[: 32 - len(self._first_bytes)]
        self._in += data
        finished: list[tuple[int, RawAnswer | HttpClientError]] = []
        try:
            self._read_frames(finished)
        except _Broken as exc:
            self._ended = True
            self._in.clear()
            self._out += f.goaway(0, f.PROTOCOL_ERROR)
            finished.extend(self.fail_all(self._not_http2() if not self._peer_spoke else ProtocolViolation(
                f"{self._label} broke the HTTP/2 protocol: {exc}"
            )))  # fmt: skip
        return finished

    def expire(self, now: float, timeout: float) -> list[tuple[int, RawAnswer | HttpClientError]]:
        """Fails (and cancels on the wire) each stream whose whole answer did not arrive within `timeout`."""
        late = [stream_id for stream_id, stream in self._streams.items() if now - stream.sent_at >= timeout]
        expired: list[tuple[int, RawAnswer | HttpClientError]] = []
        for stream_id in late:
            del self._streams[stream_id]
            if self._ended:
                self.usable = False  # the connection itself is gone
            else:
                self._out += f.rst_stream(stream_id, f.CANCEL)
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

    # frames read
    def _read_frames(self, finished: list[tuple[int, RawAnswer | HttpClientError]]) -> None:
        """Every whole frame in the buffer, in order; a partial one waits there for the rest."""
        buffer = self._in
        size = len(buffer)
        streams = self._streams
        unpack = f.FRAME_HEADER.unpack_from
        pos = 0
        while size - pos >= 9:
            length_kind, flags, stream_id = unpack(buffer, pos)
            length = length_kind >> 8
            if length > f.DEFAULT_MAX_FRAME:  # the largest we allow, and we never allow more
                raise _Broken(f"a frame of {length} bytes, above the {f.DEFAULT_MAX_FRAME} allowed")
            end = pos + 9 + length
            if end > size:
                break
            kind = length_kind & 0xFF
            stream_id &= LAST_STREAM_ID
            payload = buffer[pos + 9 : end]
            pos = end
            if self._block_stream and kind != f.CONTINUATION:
                raise _Broken(f"a header block on stream {self._block_stream} interrupted by a frame of type {kind}")
            if not self._peer_spoke:
                if kind != f.SETTINGS or flags & f.ACK:
                    raise _Broken("the first frame is not SETTINGS")
                self._peer_spoke = True
            if kind == f.DATA:
                self._data(stream_id, flags, payload, streams.get(stream_id), finished)
            elif kind == f.HEADERS:
                if flags & (f.PADDED | f.PRIORITY_FLAG):
                    payload = _unpadded(payload, flags, skip=5 if flags & f.PRIORITY_FLAG else 0)
                if flags & f.END_HEADERS:
                    self._headers(stream_id, flags, payload, finished)
                elif not stream_id:
                    raise _Broken("HEADERS on stream 0")
                else:
                    self._block_stream, self._block_flags, self._block = stream_id, flags, payload
            elif kind == f.CONTINUATION:
                if not stream_id or stream_id != self._block_stream:
                    raise _Broken(f"CONTINUATION on stream {stream_id}, not after a HEADERS frame of it")
                self._block += payload
                if len(self._block) > MAX_HEADER_BLOCK:
                    raise _Broken(f"a header block above {MAX_HEADER_BLOCK} bytes")
                if flags & f.END_HEADERS:
                    self._block_stream = 0
                    self._headers(stream_id, self._block_flags, self._block, finished)
            elif kind == f.RST_STREAM:
                if length != 4 or not stream_id:
                    raise _Broken(f"RST_STREAM of {length} bytes on stream {stream_id}")
                if streams.pop(stream_id, None) is not None:
                    code = f.code_name(int.from_bytes(payload, "big"))
                    finished.append((stream_id, StreamReset(f"{self._label} reset the stream ({code})")))
            elif kind == f.SETTINGS:
                self._settings(stream_id, flags, payload)
            elif kind == f.PING:
                if length != 8 or stream_id:
                    raise _Broken(f"PING of {length} bytes on stream {stream_id}")
                if not flags & f.ACK:
                    self._out += f.frame(f.PING, f.ACK, 0, payload)
            elif kind == f.GOAWAY:
                if length < 8 or stream_id:
                    raise _Broken(f"GOAWAY of {length} bytes on stream {stream_id}")
                last = int.from_bytes(payload[:4], "big") & LAST_STREAM_ID
                code = int.from_bytes(payload[4:8], "big")
                finished.extend(self._gone_away(last, code))
                if code != f.NO_ERROR:  # a connection error: nothing more comes on this connection
                    self._ended = True
                    buffer.clear()
                    return
            elif kind == f.WINDOW_UPDATE:
                self._window_update(stream_id, payload)
            elif kind == f.PUSH_PROMISE:
                raise _Broken("PUSH_PROMISE, though the client's SETTINGS disabled push")
            # PRIORITY and unknown frame types: nothing for a client to do (RFC 9113 5.5)
        del buffer[:pos]

    def _data(self, stream_id: int, flags: int, payload: bytearray, stream: _Stream | None,
              finished: list[tuple[int, RawAnswer | HttpClientError]]) -> None:  # fmt: skip
        length = len(payload)  # flow control counts the padding too
        if length:
            self._unacknowledged += length
            if self._unacknowledged >= WINDOW_UPDATE_AFTER:
                self._out += f.window_update(0, self._unacknowledged)
                self._unacknowledged = 0
        if stream is None:  # reset or timed out by us, its frames still in flight: nothing to read
            self._idle(stream_id)
            return
        if not stream.answered:
            raise _Broken(f"DATA on stream {stream_id} before its answer's headers")
        if flags & f.PADDED:
            payload = _unpadded(payload, flags, skip=0)
        if payload and not stream.head:
            stream.answer.add_body(payload, self._max_body)
        if flags & f.END_STREAM:
            self._end(stream_id, stream, finished)
        elif length:
            stream.unacknowledged += length
            if stream.unacknowledged >= WINDOW_UPDATE_AFTER:
                self._out += f.window_update(stream_id, stream.unacknowledged)
                stream.unacknowledged = 0

    def _headers(self, stream_id: int, flags: int, block: bytes | bytearray,
                 finished: list[tuple[int, RawAnswer | HttpClientError]]) -> None:  # fmt: skip
        """A whole header block: the answer's headers, an informational answer to skip, or the trailers."""
        try:
            fields = self._decoder.decode(block, raw=True)  # every block, even a dropped stream's: HPACK's state
        except HPACKError as exc:
            raise _Broken(f"a header block that does not decode ({type(exc).__name__}: {exc})") from None
        stream = self._streams.get(stream_id)
        if stream is None:
            self._idle(stream_id)
            return
        answer = stream.answer
        if stream.answered:
            if not flags & f.END_STREAM:
                raise _Broken(f"trailers without END_STREAM on stream {stream_id}")
            answer.trailers.extend(fields)
            self._end(stream_id, stream, finished)
            return
        status = b""
        headers = []
        for name, value in fields:
            if name == b":status":
                status = value
            else:
                headers.append((name, value))
        if not status.isdigit():
            raise _Broken(f"an answer without a :status on stream {stream_id}")
        code = int(status)
        if code < 200:  # informational (100 Continue, 103 Early Hints): the answer is still to come
            if flags & f.END_STREAM:
                raise _Broken(f"an informational answer ending stream {stream_id}")
            return
        answer.ttfb_ns = time.perf_counter_ns()
        answer.status = code
        answer.headers = headers
        stream.answered = True
        if flags & f.END_STREAM:
            self._end(stream_id, stream, finished)

    def _end(self, stream_id: int, stream: _Stream, finished: list[tuple[int, RawAnswer | HttpClientError]]) -> None:
        del self._streams[stream_id]
        if stream.body:  # answered before the whole request went: stop sending it, free the stream
            self._out += f.rst_stream(stream_id, f.CANCEL)
        stream.answer.done_ns = time.perf_counter_ns()
        finished.append((stream_id, stream.answer))

    def _idle(self, stream_id: int) -> int:
        """A frame for a stream not in flight: one we reset, or that timed out, may still have frames on the way
        (ignored), but one never opened (idle, or even: pushed) is a protocol error."""
        if not stream_id or stream_id >= self._next_id or not stream_id & 1:
            raise _Broken(f"a frame for stream {stream_id}, which the client never opened")
        return stream_id

    def _settings(self, stream_id: int, flags: int, payload: bytearray) -> None:
        if stream_id or len(payload) % 6 or (flags & f.ACK and payload):
            raise _Broken(f"SETTINGS of {len(payload)} bytes on stream {stream_id}")
        if flags & f.ACK:
            return
        limit = NO_STREAM_LIMIT if not self.settled else self._stream_limit
        resend = False
        for offset in range(0, len(payload), 6):
            key = int.from_bytes(payload[offset : offset + 2], "big")
            value = int.from_bytes(payload[offset + 2 : offset + 6], "big")
            if key == f.MAX_CONCURRENT_STREAMS:
                limit = value
            elif key == f.INITIAL_WINDOW_SIZE:
                if value > f.MAX_WINDOW:
                    raise _Broken(f"INITIAL_WINDOW_SIZE {value}, above 2^31-1")
                delta = value - self._stream_window
                self._stream_window = value
                for stream in self._streams.values():
                    stream.window += delta
                resend = True
            elif key == f.MAX_FRAME_SIZE:
                if not f.DEFAULT_MAX_FRAME <= value <= 0xFFFFFF:
                    raise _Broken(f"MAX_FRAME_SIZE {value}, outside 2^14 to 2^24-1")
                self._max_frame = value
            elif key == f.ENABLE_PUSH and value > 1:
                raise _Broken(f"ENABLE_PUSH {value}, neither 0 nor 1")
            # HEADER_TABLE_SIZE: our encoder uses no dynamic table, whatever size the peer allows
        self._out += f.SETTINGS_ACK
        self._stream_limit = limit
        self.settled = True
        if resend:
            self._send_waiting()

    def _window_update(self, stream_id: int, payload: bytearray) -> None:
        if len(payload) != 4:
            raise _Broken(f"WINDOW_UPDATE of {len(payload)} bytes")
        increment = int.from_bytes(payload, "big") & LAST_STREAM_ID
        if not increment:
            raise _Broken(f"WINDOW_UPDATE of 0 on stream {stream_id}")
        if not stream_id:
            self._window += increment
            if self._window > f.MAX_WINDOW:
                raise _Broken("WINDOW_UPDATE beyond 2^31-1 for the connection")
            self._send_waiting()
        elif (stream := self._streams.get(stream_id)) is not None:
            stream.window += increment
            if stream.window > f.MAX_WINDOW:
                raise _Broken(f"WINDOW_UPDATE beyond 2^31-1 on stream {stream_id}")
            if stream.body:
                self._send_body(stream_id, stream)

    def _gone_away(self, last: int, error_code: int) -> Iterable[tuple[int, HttpClientError]]:
        """The connection takes no new stream; the streams above `last` fail at once, unprocessed (safe to
        retry). A graceful GOAWAY (NO_ERROR: a server draining, RFC 9113 6.8) leaves the others open, to be
        answered as their frames come, and a later one may lower `last`; an error one fails them too."""
        self.usable = False
        code = f.code_name(error_code)
        self.failure = self.failure or GoneAway(f"{self._label} sent GOAWAY ({code})")
        graceful = error_code == f.NO_ERROR
        for stream_id in list(self._streams):
            if stream_id > last:
                del self._streams[stream_id]
                yield stream_id, GoneAway(f"{self._label} sent GOAWAY ({code}) without processing the stream")
            elif not graceful:
                del self._streams[stream_id]
                yield stream_id, GoneAway(f"{self._label} sent GOAWAY ({code}) before the answer was complete")

    # frames sent
    def _continued(self, stream_id: int, block: bytes, has_body: bool) -> None:
        """A header block larger than the peer's largest frame: HEADERS, then CONTINUATION frames."""
        size = self._max_frame
        chunks = [block[offset : offset + size] for offset in range(0, len(block), size)]
        self._out += f.frame(f.HEADERS, 0 if has_body else f.END_STREAM, stream_id, chunks[0])
        for chunk in chunks[1:-1]:
            self._out += f.frame(f.CONTINUATION, 0, stream_id, chunk)
        self._out += f.frame(f.CONTINUATION, f.END_HEADERS, stream_id, chunks[-1])

    def _send_waiting(self) -> None:
        for stream_id, stream in list(self._streams.items()):
            if stream.body:
                self._send_body(stream_id, stream)

    def _send_body(self, stream_id: int, stream: _Stream) -> None:
        """As much of the body as the flow-control windows allow; the rest goes when the peer opens them."""
        body = stream.body
        out = self._out
        while body:
            size = min(self._window, stream.window, self._max_frame, len(body))
            if size <= 0:
                break
            last = size == len(body)
            out += (size << 48 | (_DATA_LAST_FRAME if last else 0) | stream_id).to_bytes(9, "big")
            out += body[:size]
            body = body[size:]
            self._window -= size
            stream.window -= size
        stream.body = body


def _unpadded(payload: bytearray, flags: int, *, skip: int) -> bytearray:
    """A frame's content without its padding (PADDED: a length byte first, then that many bytes at the end)
    and without the `skip` bytes after (HEADERS' priority fields)."""
    start, stop = 0, len(payload)
    if flags & f.PADDED:
        if not payload:
            raise _Broken("a PADDED frame without its pad length")
        start, stop = 1, stop - payload[0]
    start += skip
    if stop < start:
        raise _Broken("a frame's padding longer than the frame")
    return payload[start:stop]
