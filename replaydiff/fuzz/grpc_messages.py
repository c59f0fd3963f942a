"""gRPC request bodies for fuzzing: one framed message, built from the method's input type when a schema is known,
else from the recorded messages' wire shape.

With a schema every field draws from its type (each integer type within its range and at its edges, floats,
booleans, enum values, strings, bytes, repeated fields as lists, nested messages down to `MAX_DEPTH`), the recorded
values first where the recording has the field (matched by field number), so hypothesis shrinks toward real traffic.
Without a schema the recorded messages are read by wire format (`diff.messages.wire_document`: members named by
field number), the ordinary JSON strategies generate look-alikes (a field missing, added or retyped now and then),
and `wire_encoded` writes them back: numbers as varints, strings and nested objects as length-delimited fields.
"""

from __future__ import annotations

import struct
from typing import Any

from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from replaydiff.corpora import protowire
from replaydiff.corpora.grpc import GrpcMessage, join_messages
from replaydiff.fuzz.infer import ValueShape
from replaydiff.fuzz.strategies import INT_BOUNDARIES, json_values, recorded_or, simplest_first, strings

MAX_DEPTH = 4
"""Nested message fields below this depth stay unset: recursive types (a tree of nodes) would not end otherwise."""
MAX_REPEATED = 4
EXTRA_FIELD_NUMBER = 536_870_911
"""Where a member the JSON strategies add (a name, not a number) goes on the wire: the highest field number."""

_F = descriptor.FieldDescriptor
_INT_RANGES = {
    _F.TYPE_INT32: (-(2**31), 2**31 - 1), _F.TYPE_SINT32: (-(2**31), 2**31 - 1), _F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _F.TYPE_INT64: (-(2**63), 2**63 - 1), _F.TYPE_SINT64: (-(2**63), 2**63 - 1), _F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _F.TYPE_UINT32: (0, 2**32 - 1), _F.TYPE_FIXED32: (0, 2**32 - 1),
    _F.TYPE_UINT64: (0, 2**64 - 1), _F.TYPE_FIXED64: (0, 2**64 - 1),
}  # fmt: skip


def framed(payload: bytes) -> bytes:
    """A request body: one uncompressed gRPC message."""
    return join_messages([GrpcMessage(payload)])


def schema_bodies(message_type: descriptor.Descriptor, recorded: ValueShape | None) -> SearchStrategy[bytes]:
    return messages(message_type, recorded).map(lambda message: framed(message.SerializeToString()))


def messages(message_type: descriptor.Descriptor, recorded: ValueShape | None, depth: int = 0) -> SearchStrategy[Message]:
    """Messages of `message_type`, each field set or left at its default (which proto3 does not send)."""
    make = message_factory.GetMessageClass(message_type)
    fields: dict[str, SearchStrategy[Any]] = {}
    for field in message_type.fields:
        if field.cpp_type == _F.CPPTYPE_MESSAGE and (
            depth >= MAX_DEPTH or field.message_type.GetOptions().map_entry
            or field.message_type.full_name.startswith("google.protobuf.")
        ):
            continue  # left unset: maps and well-known types are not generated (yet), deep nesting never
        seen = recorded.fields.get(str(field.number)) if recorded is not None else None
        if field.is_repeated:
            fields[field.name] = st.lists(field_values(field, seen.items if seen else None, depth), max_size=MAX_REPEATED)
        else:
            fields[field.name] = field_values(field, seen, depth)
    return st.fixed_dictionaries({}, optional=fields).map(lambda values: make(**values))


def field_values(field: descriptor.FieldDescriptor, recorded: ValueShape | None, depth: int) -> SearchStrategy[Any]:
    """Values of one field's type; recorded ones first where the type allows them."""
    if field.type in _INT_RANGES:
        low, high = _INT_RANGES[field.type]
        seen = simplest_first({int(v) for v in (recorded.numbers if recorded else ()) if low <= int(v) <= high})
        edges = simplest_first({v for v in (*INT_BOUNDARIES, low, high, low + 1, high - 1) if low <= v <= high})
        return recorded_or(seen, st.sampled_from(edges), st.integers(low, high))
    if field.type == _F.TYPE_BOOL:
        return st.booleans()
    if field.type in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        return st.floats(allow_nan=False, width=64 if field.type == _F.TYPE_DOUBLE else 32)
    if field.type == _F.TYPE_ENUM:
        numbers = sorted(value.number for value in field.enum_type.values)
        return st.sampled_from([*numbers, numbers[-1] + 1])  # proto3 enums are open: one number the schema lacks
    if field.type == _F.TYPE_STRING:
        return strings(recorded) if recorded is not None and recorded.strings else st.text(max_size=32)
    if field.type == _F.TYPE_BYTES:
        return st.binary(max_size=64)
    nested = recorded if recorded is not None and recorded.fields else None
    return messages(field.message_type, nested, depth + 1)


def wire_bodies(recorded: ValueShape) -> SearchStrategy[bytes]:
    """Bodies like the recorded ones, without a schema: their wire shape, generated and written back."""
    return json_values(recorded).map(lambda document: framed(wire_encoded(document)))


def wire_encoded(document: Any) -> bytes:
    """A wire-format document (members named by field number) as message bytes; a document that is not an object
    (a mutation replaced it) becomes the empty message."""
    if not isinstance(document, dict):
        return b""
    fields: list[protowire.WireField] = []
    for key, value in document.items():
        number = int(key) if key.isdigit() and 1 <= int(key) <= EXTRA_FIELD_NUMBER else EXTRA_FIELD_NUMBER
        for item in value if isinstance(value, list) else [value]:
            if (field := _wire_field(number, item)) is not None:
                fields.append(field)
    return protowire.encode(fields)


def _wire_field(number: int, value: Any) -> protowire.WireField | None:
    if value is None:
        return None  # absent, as proto3 sends a default
    if isinstance(value, bool | int):
        return protowire.WireField(number, protowire.VARINT, int(value) & (2**64 - 1))
    if isinstance(value, float):
        return protowire.WireField(number, protowire.FIXED64, struct.unpack("<Q", struct.pack("<d", value))[0])
    if isinstance(value, str):
        return protowire.WireField(number, protowire.LENGTH_DELIMITED, value.encode("utf-8", "surrogatepass"))
    if isinstance(value, dict):
        return protowire.WireField(number, protowire.LENGTH_DELIMITED, wire_encoded(value))
    return protowire.WireField(number, protowire.LENGTH_DELIMITED, b"".join(  # a list inside a list: packed bytes
        protowire.write_varint(int(item)) for item in value if isinstance(item, int)
    ))
