"""The sanitizer on HTTP/2 and gRPC: headers as HTTP/2 sends them, trailers, and gRPC messages with and without a
schema (the catalog's real messages from its .proto), framing kept whatever was replaced."""

from __future__ import annotations

import zlib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from replaydiff.corpora import Exchange, Request, Response, header_value
from replaydiff.corpora.grpc import GrpcMessage, join_messages, split_messages
from replaydiff.demo import grpc_catalog
from replaydiff.corpora.protobuf import read_schema
from replaydiff.recorder.grpc_walk import UNREAD_RULE
from replaydiff.recorder.policy import load_policy
from replaydiff.recorder.sanitize import MASK, Sanitizer

KEY = b"k" * 32
MESSAGES = grpc_catalog.message_classes()
SCHEMA = read_schema(None, [grpc_catalog.PROTO])
TOKEN = "sk_live_" + "a1B2c3D4e5F6g7H8"
GRPC = [("content-type", "application/grpc"), ("te", "trailers")]


def item(**fields: object) -> bytes:
    stock = fields.pop("stock", {"count": 3, "warehouse": "north"})
    message = MESSAGES["Item"](**fields)
    message.stock.CopyFrom(MESSAGES["Stock"](**stock))  # type: ignore[arg-type]
    return message.SerializeToString()


def exchange(answer: bytes, *, headers: list[tuple[str, str]] | None = None, trailers=None) -> Exchange:  # type: ignore[no-untyped-def]
    request = Request(
        "POST", "http", "127.0.0.1", 50051, "/shop.Catalog/GetItem", http_version="HTTP/2.0",
        headers=[*GRPC, *(headers or [])], body=join_messages([GrpcMessage(MESSAGES["ItemRequest"](sku="sku-1").SerializeToString())]),
    )
    response = Response(
        200, http_version="HTTP/2.0", headers=[("content-type", "application/grpc")], body=answer,
        trailers=trailers if trailers is not None else [("grpc-status", "0")],
    )
    return Exchange("x", "s", 0, request, response)


def answer_items(sanitized: Exchange) -> list:  # type: ignore[type-arg]
    assert sanitized.response is not None
    return [MESSAGES["Item"].FromString(message.payload) for message in split_messages(sanitized.response.body)]


def test_without_a_schema_string_fields_are_scanned_and_the_messages_still_parse() -> None:
    body = join_messages([
        GrpcMessage(item(sku="sku-1", name=f"key {TOKEN}", owner_email="owner1@example.com", price_cents=299)),
        GrpcMessage(item(sku="sku-2", owner_email="owner2@example.com", stock={"count": 4, "warehouse": "a@b.example.org"})),
    ])
    sanitizer = Sanitizer(key=KEY)
    sanitized = sanitizer.exchange(exchange(body))
    assert sanitized.response is not None
    for secret in (TOKEN.encode(), b"owner1@example.com", b"owner2@example.com", b"a@b.example.org"):
        assert secret not in sanitized.response.body
    first, second = answer_items(sanitized)
    assert (first.sku, first.price_cents, first.stock.count) == ("sku-1", 299, 3), "the rest is untouched"
    assert first.name == f"key {MASK}" and first.owner_email.endswith("@example.invalid")
    assert second.stock.warehouse.endswith("@example.invalid"), "nested messages are walked too"
    assert sanitizer.fired["api-key"] == 1 and sanitizer.fired["email"] == 3


def test_with_a_schema_fields_are_masked_by_name(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(
        '[[rules]]\nname = "owner"\njson = ["$.owner_email"]\naction = "drop"\n'
        '[[rules]]\nname = "where"\njson = ["$..warehouse"]\n'
        '[[rules]]\nname = "price"\njson = ["$.price_cents"]\n'
        '[[rules]]\nname = "tags"\njson = ["$.tags[*]"]\naction = "pseudonymize"\n'
    )
    sanitizer = Sanitizer(load_policy(tmp_path / "p.toml"), key=KEY, grpc_schema=SCHEMA)
    body = join_messages([GrpcMessage(item(sku="sku-1", owner_email="no-pattern-here", price_cents=9, tags=["demo"]))])
    [sanitized] = answer_items(sanitizer.exchange(exchange(body)))
    assert sanitized.owner_email == "" and sanitized.stock.warehouse == MASK
    assert sanitized.price_cents == 0, "a number cannot say [masked]: cleared"
    assert sanitized.sku == "sku-1" and len(sanitized.tags) == 1 and sanitized.tags[0] not in ("demo", "")
    assert {name: sanitizer.fired[name] for name in ("owner", "where", "price", "tags")} == dict.fromkeys(
        ("owner", "where", "price", "tags"), 1
    )


def test_gzip_and_deflate_messages_are_read_and_compressed_again() -> None:
    for encoding, wbits in (("gzip", 31), ("deflate", 15)):
        for schema in (None, SCHEMA):
            sanitizer = Sanitizer(key=KEY, grpc_schema=schema)
            packer = zlib.compressobj(wbits=wbits)
            payload = packer.compress(item(owner_email="zipped@example.com")) + packer.flush()
            answer = exchange(join_messages([GrpcMessage(payload, compressed=True)]))
            assert answer.response is not None
            answer.response.headers.append(("grpc-encoding", encoding))
            sanitized = sanitizer.exchange(answer)
            assert sanitized.response is not None
            [message] = split_messages(sanitized.response.body)
            assert message.compressed and b"zipped" not in zlib.decompress(message.payload, wbits)
            assert MESSAGES["Item"].FromString(zlib.decompress(message.payload, wbits)).stock.warehouse == "north"
            assert sanitizer.fired[UNREAD_RULE] == 0


def test_a_compressed_or_unparsable_message_is_left_and_counted() -> None:
    for schema in (None, SCHEMA):
        sanitizer = Sanitizer(key=KEY, grpc_schema=schema)
        compressed = GrpcMessage(b"\x1f\x8b owner@example.com", compressed=True)  # no grpc-encoding said which
        garbage = GrpcMessage(b"\xff\xff\xff\xff")
        body = join_messages([compressed, garbage, GrpcMessage(item(owner_email="x1@example.com"))])
        sanitized = sanitizer.exchange(exchange(body))
        assert sanitized.response is not None
        kept = split_messages(sanitized.response.body)
        assert kept[:2] == [compressed, garbage] and b"x1@example.com" not in kept[2].payload
        assert sanitizer.fired[UNREAD_RULE] == 2
        unframed = sanitizer.exchange(exchange(b"\x00\x00\x00\x00\x09short"))
        assert unframed.response is not None and unframed.response.body == b"\x00\x00\x00\x00\x09short"
        assert sanitizer.fired[UNREAD_RULE] == 3


def test_http2_headers_metadata_and_trailers_follow_the_policy() -> None:
    """HTTP/2 sends names in lower case and keeps pseudo-headers out of the list; gRPC metadata are headers."""
    headers = [
        ("authorization", "Bearer AUTHSECRET1abc"),
        ("x-api-key", "APIKEYSECRET4"),
        ("grpc-timeout", "5S"),
        ("x-session-token-bin", "c2VjcmV0"),
    ]
    trailers = [("grpc-status", "5"), ("grpc-message", "no item for owner9@example.com")]
    sanitized = Sanitizer(key=KEY).exchange(exchange(b"", headers=headers, trailers=trailers))
    sent = dict(sanitized.request.headers)
    assert "AUTHSECRET1abc" not in sent["authorization"] and sent["authorization"].startswith("Bearer ")
    assert sent["x-api-key"] != "APIKEYSECRET4" and sent["x-session-token-bin"] != "c2VjcmV0"
    assert sent["grpc-timeout"] == "5S" and sent["te"] == "trailers"
    assert sanitized.response is not None
    message = header_value(sanitized.response.trailers, "grpc-message")
    assert message is not None and "owner9@example.com" not in message and message.startswith("no item for ")


def test_a_value_masked_in_a_header_is_masked_where_it_reappears_in_a_message() -> None:
    secret = "Zq8vT3nPw0sLk2"
    body = join_messages([GrpcMessage(item(name=f"issued to {secret}"))])
    sanitized = Sanitizer(key=KEY).exchange(exchange(body, headers=[("x-api-key", secret)]))
    assert sanitized.response is not None and secret.encode() not in sanitized.response.body
    [answer] = answer_items(sanitized)
    assert answer.name.startswith("issued to ") and secret not in answer.name


@settings(max_examples=60, deadline=None)
@given(
    strings=st.lists(st.text(max_size=40) | st.emails().map(str), min_size=4, max_size=4),
    price=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    count=st.integers(min_value=0, max_value=4),
    schema=st.sampled_from([None, SCHEMA]),
)
def test_sanitized_grpc_bodies_always_split_and_parse(strings: list[str], price: int, count: int, schema) -> None:  # type: ignore[no-untyped-def]
    sku, name, email, warehouse = strings
    payload = item(sku=sku, name=name, owner_email=email, price_cents=price, tags=[name, email],
                   stock={"count": count, "warehouse": warehouse})
    body = join_messages([GrpcMessage(payload)] * count)
    sanitized = Sanitizer(key=KEY, grpc_schema=schema).exchange(exchange(body))
    answers = answer_items(sanitized)
    assert len(answers) == count
    for answer in answers:
        assert answer.price_cents == price and answer.stock.count == count
        if sku.isalpha() and len(sku) < 32:  # no pattern (card, key, email) can match such a value
            assert answer.sku == sku, "nothing secret in it: untouched"
