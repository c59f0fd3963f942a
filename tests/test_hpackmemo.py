"""The memoized HPACK of the HTTP/2 replay client against hpack's own coder: the same fields, block after block."""

from __future__ import annotations

import hpack
from hypothesis import given
from hypothesis import strategies as st

from replaydiff.replayer.hpackmemo import MemoDecoder, StatelessEncoder, encode_field

_names = st.one_of(
    st.sampled_from([b":method", b":path", b":authority", b"content-type", b"accept", b"authorization", b"te",
                     b"traceparent", b"cookie", b"user-agent", b"grpc-timeout"]),
    st.binary(min_size=1, max_size=20).map(lambda name: name.lower().replace(b":", b"x")),
)
_values = st.one_of(st.sampled_from([b"GET", b"POST", b"/", b"trailers", b"gzip, deflate", b""]),
                    st.binary(max_size=300))
_blocks = st.lists(st.lists(st.tuples(_names, _values), max_size=12), min_size=1, max_size=6)


@given(_names, _values)
def test_a_field_decodes_to_itself_whatever_the_table(name: bytes, value: bytes) -> None:
    assert list(hpack.Decoder().decode(encode_field(name, value), raw=True)) == [(name, value)]


@given(_blocks)
def test_blocks_decode_alike_on_any_decoder_and_leave_its_table_empty(blocks: list[list[tuple[bytes, bytes]]]) -> None:
    encoder, decoder = StatelessEncoder(), hpack.Decoder()
    for block in blocks:
        encoded = encoder.encode(block)
        assert list(decoder.decode(encoded, raw=True)) == block
        assert not decoder.header_table.dynamic_entries
        assert list(hpack.Decoder().decode(encode_block_again(block), raw=True)) == block


def encode_block_again(block: list[tuple[bytes, bytes]]) -> bytes:
    """A block from a fresh encoder: the size update to 0 first, then the same field bytes."""
    return StatelessEncoder().encode(block)


@given(_blocks)
def test_the_memo_decoder_reads_what_hpack_reads_from_a_peer_without_a_table(
    blocks: list[list[tuple[bytes, bytes]]],
) -> None:
    peer = hpack.Encoder()
    peer.header_table_size = 0  # as a peer does once it read our SETTINGS_HEADER_TABLE_SIZE 0
    memo, plain = MemoDecoder(1 << 16), hpack.Decoder()
    memo.max_allowed_table_size = plain.max_allowed_table_size = 0
    for block in blocks + blocks:  # the second time round, from the memo
        encoded = peer.encode(block)
        assert memo.decode(encoded, raw=True) == list(plain.decode(encoded, raw=True)) == block
