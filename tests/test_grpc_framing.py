"""gRPC framing: the corpus keeps bodies framed; splitting and joining are inverse, and broken framing says where."""

from hypothesis import given
from hypothesis import strategies as st

import pytest

from replaydiff.corpora.grpc import (
    GrpcFramingError,
    GrpcMessage,
    endpoint_name,
    grpc_status,
    is_grpc,
    join_messages,
    method_name,
    split_messages,
)
from replaydiff.corpora.model import Response

messages = st.lists(st.builds(GrpcMessage, payload=st.binary(max_size=300), compressed=st.booleans()), max_size=8)


@given(messages)
def test_split_undoes_join(sequence: list[GrpcMessage]) -> None:
    assert split_messages(join_messages(sequence)) == sequence


@given(messages.filter(bool), st.data())
def test_a_body_cut_inside_a_message_is_a_framing_error(sequence: list[GrpcMessage], data: st.DataObject) -> None:
    body = join_messages(sequence)
    boundaries = _boundaries(sequence)
    cut = data.draw(st.integers(min_value=1, max_value=len(body) - 1).filter(lambda n: n not in boundaries))
    with pytest.raises(GrpcFramingError):
        split_messages(body[:cut])


def _boundaries(sequence: list[GrpcMessage]) -> set[int]:
    ends, offset = set(), 0
    for message in sequence:
        offset += 5 + len(message.payload)
        ends.add(offset)
    return ends


def test_status_comes_from_trailers_or_a_trailers_only_answer() -> None:
    assert grpc_status(Response(200, trailers=[("grpc-status", "5")])) == 5
    assert grpc_status(Response(200, headers=[("grpc-status", "14")])) == 14
    assert grpc_status(Response(200)) is None


def test_names() -> None:
    assert is_grpc([("Content-Type", "application/grpc+proto")])
    assert not is_grpc([("content-type", "application/grpc-web")])
    assert method_name("/shop.Catalog/GetItem") == "shop.Catalog/GetItem"
    assert method_name("/shop/items/1") is None
    assert endpoint_name("/shop.Catalog/GetItem") == "grpc shop.Catalog/GetItem"
    with pytest.raises(GrpcFramingError, match="compressed flag 2"):
        split_messages(b"\x02\x00\x00\x00\x00")
