"""The schema-less protobuf reader/writer against protobuf's own encoder (the oracle), on generated messages."""

from hypothesis import given
from hypothesis import strategies as st

import pytest

from replaydiff.corpora import protowire
from replaydiff.demo.grpc_catalog import message_classes

classes = message_classes()
stocks = st.builds(classes["Stock"], count=st.integers(-(2**31), 2**31 - 1), warehouse=st.text(max_size=20))
items = st.builds(
    classes["Item"],
    sku=st.text(max_size=30),
    name=st.text(max_size=30),
    price_cents=st.integers(-(2**63), 2**63 - 1),
    tags=st.lists(st.text(max_size=10), max_size=4),
    stock=stocks,
    owner_email=st.emails(),
)


@given(items)
def test_parse_then_encode_gives_protobufs_bytes_back(item) -> None:  # type: ignore[no-untyped-def]
    payload = item.SerializeToString()
    assert protowire.encode(protowire.parse(payload)) == payload


@given(items)
def test_fields_read_as_protobuf_wrote_them(item) -> None:  # type: ignore[no-untyped-def]
    fields = {field.number: field for field in protowire.parse(item.SerializeToString())}
    if item.price_cents:
        assert fields[3].wire_type == protowire.VARINT
        assert fields[3].value == item.price_cents % 2**64
    stock = protowire.as_message(fields[5].value) if 5 in fields else None  # type: ignore[arg-type]
    if item.stock.count:
        assert stock is not None and stock[0].number == 1


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_fail_with_wire_format_error(data: bytes) -> None:
    try:
        fields = protowire.parse(data)
    except protowire.WireFormatError:
        return
    assert all(1 <= field.number for field in fields)


def test_a_cut_message_names_the_field() -> None:
    with pytest.raises(protowire.WireFormatError, match="field 1 says 5 bytes but 2 follow"):
        protowire.parse(b"\x0a\x05ab")
