"""The HTTP/2 client codec (`replayer.http2.H2Session`, `replayer.h2frames`) against an independent HTTP/2
implementation as its peer: h2's server side (python-hyper), in memory, byte for byte; padded and prioritised
frames, which h2's server does not send, are built with hyperframe.

The sockets, pools and misbehaving servers over 127.0.0.1 are tests/test_http2.py's; here inputs vary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import pytest
from hyperframe.frame import (
    ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PushPromiseFrame, SettingsFrame,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from replaydiff.replayer.http1 import ConnectionReset, HttpClientError, ProtocolViolation, RawAnswer
from replaydiff.replayer.http2 import GoneAway, H2Session, StreamReset

Result = RawAnswer | HttpClientError
Headers = list[tuple[bytes, bytes]]


@dataclass
class Reply:
    """What the peer answers one request with."""

    status: int = 200
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    trailers: Headers = field(default_factory=list)
    informational: bool = False
    """A 103 Early Hints before the answer."""
    pad: int = 0
    """Padding on each DATA frame."""
    reset: int | None = None
    """RST_STREAM with this code instead of an answer."""


class Peer:
    """h2's server side in memory: reads what the session wrote, answers each whole request with `respond`'s
    reply, sending bodies as the session's windows allow; `wire` is every byte it sent."""

    def __init__(self, respond: Callable[[Headers, bytes], Reply], **local: int) -> None:
        config = h2.config.H2Configuration(client_side=False, header_encoding=None, normalize_outbound_headers=False,
                                           validate_outbound_headers=False)  # answers sent as given
        self.conn = h2.connection.H2Connection(config)
        if local:  # in the server's preface, as the session puts its own
            codes = h2.settings.SettingCodes
            self.conn.local_settings = h2.settings.Settings(client=False, initial_values={
                codes[name]: value for name, value in local.items()})
        self.conn.initiate_connection()
        self.respond = respond
        self.requests: dict[int, tuple[Headers, bytearray]] = {}
        self.sending: dict[int, tuple[memoryview, Reply]] = {}
        self.events: list[h2.events.Event] = []
        self.wire = bytearray()
        self.holding = False
        """Whole requests wait in `held` for the test to answer them (a slow handler)."""
        self.held: list[int] = []

    def receive(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            self.events.append(event)
            if isinstance(event, h2.events.RequestReceived):
                self.requests[event.stream_id] = (list(event.headers), bytearray())
            elif isinstance(event, h2.events.DataReceived):
                self.requests[event.stream_id][1].extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                if self.holding:
                    self.held.append(event.stream_id)
                    continue
                headers, body = self.requests[event.stream_id]
                self.answer(event.stream_id, self.respond(headers, bytes(body)))
            elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
                self.pump()

    def answer(self, stream_id: int, reply: Reply) -> None:
        if reply.reset is not None:
            self.conn.reset_stream(stream_id, reply.reset)
            return
        if reply.informational:
            self.conn.send_headers(stream_id, [(b":status", b"103"), (b"link", b"</style.css>; rel=preload")])
        done = not reply.body and not reply.trailers
        self.conn.send_headers(stream_id, [(b":status", b"%d" % reply.status), *reply.headers], end_stream=done)
        if not done:
            self.sending[stream_id] = (memoryview(reply.body), reply)
            self.pump()

    def pump(self) -> None:
        for stream_id in list(self.sending):
            body, reply = self.sending[stream_id]
            while body:
                room = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
                size = min(room - (reply.pad + 1 if reply.pad else 0), len(body))
                if size <= 0:
                    break
                self.conn.send_data(stream_id, body[:size].tobytes(), pad_length=reply.pad or None)
                body = body[size:]
            self.sending[stream_id] = (body, reply)
            if not body:
                del self.sending[stream_id]
                if reply.trailers:
                    self.conn.send_headers(stream_id, reply.trailers, end_stream=True)
                else:
                    self.conn.end_stream(stream_id)

    def take(self) -> bytes:
        data = self.conn.data_to_send()
        self.wire += data
        return data


def converse(session: H2Session, peer: Peer, rounds: int = 10_000) -> dict[int, Result]:
    """Bytes back and forth until neither side has more to say; the streams that finished."""
    results: dict[int, Result] = {}
    for _ in range(rounds):
        sent = session.data_to_send()
        if sent:
            peer.receive(sent)
        back = peer.take()
        if not sent and not back:
            return results
        if back:
            results.update(session.feed(back))
    raise AssertionError("the conversation did not end")


def request(path: bytes = b"/", method: bytes = b"GET", extra: Headers | None = None) -> Headers:
    return [(b":method", method), (b":scheme", b"http"), (b":authority", b"api.internal"), (b":path", path),
            *(extra or [])]


def settled(session: H2Session, peer: Peer) -> None:
    converse(session, peer)
    assert session.settled


def answered(result: Result) -> tuple[int, Headers, bytes, Headers]:
    assert isinstance(result, RawAnswer), result
    return result.status, result.headers, bytes(result.body), result.trailers


_tokens = st.binary(min_size=1, max_size=12).map(lambda raw: raw.hex().encode())
_replies = st.builds(
    Reply,
    status=st.sampled_from([200, 201, 204, 304, 404, 500, 503]),
    headers=st.lists(st.tuples(_tokens.map(lambda name: b"x-" + name), st.binary(max_size=40)), max_size=4),
    body=st.one_of(st.just(b""), st.binary(max_size=200), st.integers(1, 40_000).map(lambda n: bytes(n % 251
                                                                                                   for n in range(n)))),
    trailers=st.one_of(st.just([]), st.just([(b"grpc-status", b"0"), (b"grpc-message", b"")])),
    informational=st.booleans(),
    pad=st.sampled_from([0, 0, 1, 17, 255]),
    reset=st.sampled_from([None, None, None, 0x8, 0xB]),
)


@settings(max_examples=60)
@given(replies=st.lists(_replies, min_size=1, max_size=4), cuts=st.lists(st.integers(0, 1 << 20), max_size=30))
def test_answers_are_the_same_wherever_the_peers_bytes_are_split(replies: list[Reply], cuts: list[int]) -> None:
    paths = [b"/%d" % n for n in range(len(replies))]
    peer = Peer(lambda headers, _: replies[paths.index(dict(headers)[b":path"])])
    session = H2Session(1 << 20, label="the target")
    ids = [session.start(request(path), b"") for path in paths]
    whole = converse(session, peer)
    assert sorted(whole) == ids and session.idle
    for stream_id, reply in zip(ids, replies, strict=True):
        if reply.reset is not None:
            assert isinstance(whole[stream_id], StreamReset)
            assert str(whole[stream_id]) == f"the target reset the stream ({'CANCEL' if reply.reset == 8 else 'ENHANCE_YOUR_CALM'})"
        else:
            assert answered(whole[stream_id]) == (reply.status, reply.headers, reply.body, reply.trailers)

    again = H2Session(1 << 20, label="the target")
    assert [again.start(request(path), b"") for path in paths] == ids
    wire = bytes(peer.wire)
    points = sorted({cut % (len(wire) + 1) for cut in cuts})
    pieces = [wire[start:end] for start, end in zip([0, *points], [*points, len(wire)], strict=True)]
    split: dict[int, Result] = {}
    for piece in pieces:
        split.update(again.feed(piece))
    assert sorted(split) == ids
    for stream_id in ids:
        if isinstance(whole[stream_id], RawAnswer):
            assert answered(split[stream_id]) == answered(whole[stream_id])
        else:
            assert str(split[stream_id]) == str(whole[stream_id])


def test_a_request_body_over_many_windows_reaches_a_peer_with_a_small_window() -> None:
    """A 200 KB upload to a peer allowing 1,000 bytes per stream and 16,384 bytes per frame: the body goes as
    the peer's WINDOW_UPDATEs open the stream and connection windows."""
    body = bytes(range(256)) * 800
    peer = Peer(lambda headers, got: Reply(body=b"%d" % len(got)), INITIAL_WINDOW_SIZE=1000)
    session = H2Session(1 << 20, label="the target")
    settled(session, peer)
    stream_id = session.start(request(b"/up", b"PUT"), body)
    results = converse(session, peer)
    assert answered(results[stream_id]) == (200, [], b"204800", [])
    assert bytes(peer.requests[stream_id][1]) == body


def test_a_body_waiting_on_a_closed_window_goes_when_the_peers_settings_open_it() -> None:
    """INITIAL_WINDOW_SIZE 0, then raised by a later SETTINGS: the open stream's window grows by the difference."""
    peer = Peer(lambda headers, got: Reply(body=got[::-1]), INITIAL_WINDOW_SIZE=0)
    session = H2Session(1 << 20, label="the target")
    settled(session, peer)
    stream_id = session.start(request(b"/up", b"POST"), b"abc" * 1000)
    assert converse(session, peer) == {} and not peer.requests[stream_id][1]
    peer.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 100_000})
    assert answered(converse(session, peer)[stream_id]) == (200, [], b"cba" * 1000, [])


def test_answers_above_the_receive_window_do_not_stall() -> None:
    """An answer of 17 MiB, above our 16 MiB stream and connection windows, then two more of 6 MiB: the session
    gives the windows back as it reads."""
    big = bytes(range(251)) * (17 * (1 << 20) // 251)
    peer = Peer(lambda headers, _: Reply(body=big if dict(headers)[b":path"] == b"/big" else big[: 6 << 20]))
    session = H2Session(32 << 20, label="the target")
    for path in (b"/big", b"/six", b"/six"):
        stream_id = session.start(request(path), b"")
        result = converse(session, peer)[stream_id]
        assert isinstance(result, RawAnswer) and result.body == (big if path == b"/big" else big[: 6 << 20])


def test_large_header_blocks_go_and_come_in_continuation_frames() -> None:
    """A request header block above the peer's 16,384-byte frames, and an answer's above ours."""
    cookie = b"c=" + b"x" * 40_000
    peer = Peer(lambda headers, _: Reply(headers=[(b"x-echo", dict(headers)[b"cookie"][:30_000])]))
    session = H2Session(1 << 20, label="the target")
    stream_id = session.start(request(extra=[(b"cookie", cookie)]), b"")
    result = converse(session, peer)[stream_id]
    assert dict(peer.requests[stream_id][0])[b"cookie"] == cookie
    assert answered(result) == (200, [(b"x-echo", cookie[:30_000])], b"", [])


def test_a_ping_is_answered_with_its_payload() -> None:
    peer = Peer(lambda headers, _: Reply())
    session = H2Session(1 << 20, label="the target")
    settled(session, peer)
    peer.conn.ping(b"12345678")
    converse(session, peer)
    assert [e.ping_data for e in peer.events if isinstance(e, h2.events.PingAckReceived)] == [b"12345678"]


def test_an_answer_to_head_has_no_body() -> None:
    """Even from a peer that sends DATA after it (as an HTTP/1.1 answer to HEAD ends after its headers)."""
    peer = Peer(lambda headers, _: Reply(headers=[(b"content-length", b"1234")], body=b"not the answer's"))
    session = H2Session(1 << 20, label="the target")
    stream_id = session.start(request(method=b"HEAD"), b"")
    assert answered(converse(session, peer)[stream_id]) == (200, [(b"content-length", b"1234")], b"", [])


def test_goaway_fails_the_streams_in_flight_saying_which_were_processed() -> None:
    peer = Peer(lambda headers, _: Reply())
    session = H2Session(1 << 20, label="the target")
    settled(session, peer)
    first, second = session.start(request(b"/a"), b""), session.start(request(b"/b"), b"")
    peer.receive(session.data_to_send())
    peer.take()  # both requests answered, but the answers lost
    peer.conn.close_connection(2, last_stream_id=first)  # INTERNAL_ERROR
    results = session.feed(peer.take())
    assert {stream_id: (type(error), str(error)) for stream_id, error in results} == {
        first: (GoneAway, "the target sent GOAWAY (INTERNAL_ERROR) before the answer was complete"),
        second: (GoneAway, "the target sent GOAWAY (INTERNAL_ERROR) without processing the stream"),
    }
    assert not session.usable and isinstance(session.failure, GoneAway)


_OK = Reply(body=b"ok", trailers=[(b"grpc-status", b"0")])
_OK_ANSWER = (200, [], b"ok", [(b"grpc-status", b"0")])
_UNPROCESSED = "the target sent GOAWAY (NO_ERROR) without processing the stream"


def _goaway(last_stream_id: int, error_code: int = 0) -> bytes:
    """GOAWAY built by hand: h2's server side sends nothing after its own, but a draining server answers on."""
    return GoAwayFrame(0, last_stream_id=last_stream_id, error_code=error_code).serialize()


def _held(count: int) -> tuple[H2Session, Peer, list[int]]:
    """A session with `count` requests the peer read whole and has not answered yet."""
    peer = Peer(lambda headers, _: _OK)
    peer.holding = True
    session = H2Session(1 << 20, label="the target")
    settled(session, peer)
    ids = [session.start(request(b"/%d" % n), b"") for n in range(count)]
    assert converse(session, peer) == {} and peer.held == ids
    return session, peer, ids


def _answer_held(session: H2Session, peer: Peer) -> dict[int, Result]:
    for stream_id in peer.held:
        peer.answer(stream_id, _OK)
    return converse(session, peer)


def test_a_graceful_goaway_fails_only_the_streams_above_its_last_id_and_the_rest_are_answered() -> None:
    """GOAWAY(NO_ERROR) covering two of three open streams, as a server draining its connections sends it (grpcio's
    stop(grace), Go, Envoy): the third was not processed and fails at once; the two are answered as they come."""
    session, peer, (first, second, third) = _held(3)
    results = session.feed(_goaway(second))
    assert [(stream_id, type(error), str(error)) for stream_id, error in results] == [
        (third, GoneAway, _UNPROCESSED)]
    assert not session.usable and session.capacity == 0 and not session.idle
    with pytest.raises(ConnectionReset, match="takes no new stream"):
        session.start(request(b"/later"), b"")
    answers = _answer_held(session, peer)  # the peer answers the third too: its frames are dropped
    assert sorted(answers) == [first, second]
    assert answered(answers[first]) == answered(answers[second]) == _OK_ANSWER
    assert session.idle and not session.usable


def test_a_second_goaway_lowers_the_last_stream_id() -> None:
    """The two-step drain of RFC 9113 6.8: GOAWAY with 2^31-1 fails nothing, the next names the real last id."""
    session, peer, (first, second, third) = _held(3)
    assert session.feed(_goaway(2**31 - 1)) == []
    assert [(stream_id, str(error)) for stream_id, error in session.feed(_goaway(first))] == [
        (second, _UNPROCESSED), (third, _UNPROCESSED)]
    assert session.feed(_goaway(third)) == []  # a last id may not rise again: nothing comes back to life
    answers = _answer_held(session, peer)
    assert list(answers) == [first] and answered(answers[first]) == _OK_ANSWER


def test_streams_left_open_by_a_graceful_goaway_fail_when_the_connection_closes() -> None:
    session, _, (first, second) = _held(2)
    assert session.feed(_goaway(second)) == []
    closed = session.closed()
    assert [(stream_id, type(error), str(error)) for stream_id, error in closed] == [
        (stream_id, ConnectionReset, "the target closed the connection before the answer was complete")
        for stream_id in (first, second)]


def test_an_error_goaway_still_fails_every_stream_in_flight() -> None:
    session, peer, (first, second, third) = _held(3)
    assert session.feed(_goaway(2**31 - 1)) == []
    results = session.feed(_goaway(second, error_code=0x2))  # INTERNAL_ERROR: a connection error
    assert [(stream_id, str(error)) for stream_id, error in results] == [
        (first, "the target sent GOAWAY (INTERNAL_ERROR) before the answer was complete"),
        (second, "the target sent GOAWAY (INTERNAL_ERROR) before the answer was complete"),
        (third, "the target sent GOAWAY (INTERNAL_ERROR) without processing the stream")]
    assert _answer_held(session, peer) == {} and session.idle


@settings(max_examples=80)
@given(count=st.integers(1, 8), lasts=st.lists(st.integers(0, 20) | st.just(2**31 - 1), min_size=1, max_size=3),
       error=st.sampled_from([None, 0x1, 0x2, 0xB]))
def test_any_goaways_leave_exactly_the_streams_they_cover_to_be_answered(
    count: int, lasts: list[int], error: int | None
) -> None:
    """Whatever streams are open and whatever last ids the GOAWAYs name: each stream ends once, those above the
    lowest last id unprocessed, those under it answered after a graceful GOAWAY and failed after an error one."""
    session, peer, ids = _held(count)
    results: dict[int, Result] = {}
    for last in lasts:
        for stream_id, result in session.feed(_goaway(last)):
            assert stream_id not in results
            results[stream_id] = result
    if error is not None:
        results.update(session.feed(_goaway(lasts[-1], error_code=error)))
    results.update(_answer_held(session, peer))
    assert sorted(results) == ids and session.idle and not session.usable
    for stream_id in ids:
        result = results[stream_id]
        if stream_id > min(lasts):
            assert isinstance(result, GoneAway) and str(result).endswith("without processing the stream")
        elif error is not None:
            assert isinstance(result, GoneAway) and str(result).endswith("before the answer was complete")
        else:
            assert answered(result) == _OK_ANSWER


def _by_hand(*frames: Frame) -> bytes:
    return b"".join(frame.serialize() for frame in frames)


def _block(fields: Headers) -> bytes:
    encoder = hpack.Encoder()
    encoder.header_table_size = 0  # as we asked: no dynamic table
    return encoder.encode(fields)


def test_padded_and_prioritised_frames_and_continuations_as_hyperframe_builds_them() -> None:
    session = H2Session(1 << 20, label="the target")
    stream_id = session.start(request(), b"")
    headers = _block([(b":status", b"200"), (b"content-type", b"text/plain")])
    wire = _by_hand(
        SettingsFrame(0),
        HeadersFrame(stream_id, _block([(b":status", b"100")]), flags=["END_HEADERS", "PADDED"], pad_length=3),
        HeadersFrame(stream_id, headers[:2], flags=["PADDED", "PRIORITY"], pad_length=200, depends_on=0,
                     stream_weight=16),
        ContinuationFrame(stream_id, headers[2:5]),
        ContinuationFrame(stream_id, headers[5:], flags=["END_HEADERS"]),
        DataFrame(stream_id, b"hello ", flags=["PADDED"], pad_length=255),
        DataFrame(stream_id, b"", flags=["PADDED"], pad_length=0),
        DataFrame(stream_id, b"world"),
        HeadersFrame(stream_id, _block([(b"x-sum", b"42")]), flags=["END_HEADERS", "END_STREAM", "PADDED"],
                     pad_length=1),
    )  # fmt: skip
    [(finished, result)] = [item for byte in range(len(wire)) for item in session.feed(wire[byte : byte + 1])]
    assert finished == stream_id
    assert answered(result) == (200, [(b"content-type", b"text/plain")], b"hello world", [(b"x-sum", b"42")])
    sent = session.data_to_send()
    assert b"\x00\x00\x00\x04\x01\x00\x00\x00\x00" in sent  # SETTINGS ACK


@pytest.mark.parametrize(("frames", "says"), [
    ([DataFrame(1, b"x" * 16_385)], "a frame of 16385 bytes, above the 16384 allowed"),
    ([PushPromiseFrame(1, promised_stream_id=2, data=_block([(b":path", b"/")]), flags=["END_HEADERS"])],
     "PUSH_PROMISE, though the client's SETTINGS disabled push"),
    ([DataFrame(1, b"body")], "DATA on stream 1 before its answer's headers"),
    ([HeadersFrame(3, _block([(b":status", b"200")]), flags=["END_HEADERS"])],
     "a frame for stream 3, which the client never opened"),
    ([HeadersFrame(1, b"\xff\xff\xff\xff", flags=["END_HEADERS"])], "a header block that does not decode"),
    ([HeadersFrame(1, _block([(b":status", b"200")])), DataFrame(1, b"x")],
     "a header block on stream 1 interrupted by a frame of type 0"),
    ([HeadersFrame(1, _block([(b"server", b"x")]), flags=["END_HEADERS"])], "an answer without a :status on stream 1"),
])  # fmt: skip
def test_a_peer_breaking_the_protocol_fails_every_stream_in_one_line(frames: list[Frame], says: str) -> None:
    session = H2Session(1 << 20, label="the target")
    session.start(request(), b"")
    results = session.feed(_by_hand(SettingsFrame(0), *frames))
    [(stream_id, error)] = results
    assert stream_id == 1 and isinstance(error, ProtocolViolation)
    assert str(error).startswith(f"the target broke the HTTP/2 protocol: {says}") and "\n" not in str(error)
    assert not session.usable and session.failure is error
    assert session.data_to_send().endswith(b"\x00\x00\x00\x00\x00\x00\x00\x01")  # GOAWAY PROTOCOL_ERROR


@given(garbage=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=5))
def test_any_bytes_after_the_settings_end_as_answers_or_one_protocol_violation(garbage: bytes, cuts: list[int]) -> None:
    session = H2Session(1 << 20, label="the target")
    ids = [session.start(request(), b"x" * 70_000), session.start(request(method=b"HEAD"), b"")]
    wire = _by_hand(SettingsFrame(0)) + garbage
    results: list[tuple[int, Result]] = []
    for start, end in zip([0, *sorted(cuts)], [*sorted(cuts), len(wire)], strict=False):
        results.extend(session.feed(wire[start:end]))
    results.extend(session.closed())
    assert sorted(stream_id for stream_id, _ in results) == ids
    assert all(isinstance(result, RawAnswer | HttpClientError) for _, result in results)
