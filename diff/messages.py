"""gRPC answers as JSON documents, so the structural differ, the rules and the noise rule work on field paths.

With a schema, a message is rendered by protobuf's own `json_format` with the proto field names and every field,
defaults included (a price going to 0 stays visible), 64-bit integers as numbers rather than proto3 JSON's strings
(so `number → string` still means a retyped field). Two things `json_format` cannot show are put back from the
wire: a field the schema knows sent with another wire type (protobuf files it among the unknown fields and the
field reads as its default) appears under its name with the value as sent, and a field number the schema does not
know appears under its number (`$["7"]`).

Without a schema (or for a method the schema lacks) a message is read by wire format: members named by field
number (`$.3`), varints and fixed values as numbers, length-delimited values as a nested message where they parse
as one (`protowire.as_message`), else as text, else base64; a repeated number becomes an array. Every difference
found so carries `WIRE_NOTE`, which the reports show.

A unary answer is its one message (`$.price_cents`); a server-streaming answer is the array of its messages
(`$[*].stock.count`; the differ compares array items position by position and names them alike).
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor, json_format, message_factory
from google.protobuf.message import DecodeError, Message

from replaydiff.corpora import Response, header_value
from replaydiff.corpora import protowire
from replaydiff.corpora.grpc import GrpcFramingError, split_messages
from replaydiff.corpora.protobuf import GrpcMethod
from replaydiff.diff.difference import Difference
from replaydiff.diff.excerpt import clip
from replaydiff.diff.rules import ValueRule
from replaydiff.diff.structure import json_changes

WIRE_NOTE = "gRPC messages decoded without a schema (wire format: fields by number); give --proto-descriptor-set, --proto or --proto-reflection for field names"
MAX_NESTING = 32
"""Length-delimited values nested deeper than this stay base64 without a schema: a bound, not a protobuf rule."""

_FITTING_WIRE_TYPES = {
    descriptor.FieldDescriptor.CPPTYPE_INT32: protowire.VARINT,
    descriptor.FieldDescriptor.CPPTYPE_INT64: protowire.VARINT,
    descriptor.FieldDescriptor.CPPTYPE_UINT32: protowire.VARINT,
    descriptor.FieldDescriptor.CPPTYPE_UINT64: protowire.VARINT,
    descriptor.FieldDescriptor.CPPTYPE_BOOL: protowire.VARINT,
    descriptor.FieldDescriptor.CPPTYPE_ENUM: protowire.VARINT,
    descriptor.FieldDescriptor.CPPTYPE_DOUBLE: protowire.FIXED64,
    descriptor.FieldDescriptor.CPPTYPE_FLOAT: protowire.FIXED32,
    descriptor.FieldDescriptor.CPPTYPE_STRING: protowire.LENGTH_DELIMITED,
    descriptor.FieldDescriptor.CPPTYPE_MESSAGE: protowire.LENGTH_DELIMITED,
}
_FIXED_TYPES = {
    descriptor.FieldDescriptor.TYPE_FIXED32: protowire.FIXED32,
    descriptor.FieldDescriptor.TYPE_SFIXED32: protowire.FIXED32,
    descriptor.FieldDescriptor.TYPE_FIXED64: protowire.FIXED64,
    descriptor.FieldDescriptor.TYPE_SFIXED64: protowire.FIXED64,
}
_INT64 = frozenset({descriptor.FieldDescriptor.CPPTYPE_INT64, descriptor.FieldDescriptor.CPPTYPE_UINT64})


class MessageError(ValueError):
    """An answer whose messages cannot be read: a broken frame, or a message that does not parse as its type."""


@dataclass(frozen=True, slots=True)
class DecodedCall:
    document: Any
    """The one message of a unary answer (None if it sent none), or the list of a stream's messages."""
    schema_less: bool


def decode_call(response: Response, method: GrpcMethod | None) -> DecodedCall:
    """The answer's messages as one JSON document; `MessageError` with a one-line reason when they cannot be read."""
    try:
        framed = split_messages(response.body)
    except GrpcFramingError as error:
        raise MessageError(f"malformed gRPC frame: {error}") from None
    encoding = (header_value(response.headers, "grpc-encoding") or "identity").strip().lower()
    payloads = [_decompressed(message.payload, encoding) if message.compressed else message.payload
                for message in framed]  # fmt: skip
    if method is None:
        documents = [wire_document(payload) for payload in payloads]
        streaming = len(documents) != 1
    else:
        documents = [schema_document(payload, method.output) for payload in payloads]
        streaming = method.server_streaming
    if streaming:
        return DecodedCall(documents, method is None)
    return DecodedCall(documents[0] if documents else None, method is None)


def _decompressed(payload: bytes, encoding: str) -> bytes:
    try:
        if encoding == "gzip":
            return gzip.decompress(payload)
        if encoding == "deflate":
            return zlib.decompress(payload)
    except (OSError, EOFError, zlib.error) as error:
        raise MessageError(f"gRPC message flagged compressed does not {encoding}-decompress: {error}") from None
    raise MessageError(f"gRPC message compressed with {encoding!r}, which replaydiff cannot decompress")


def schema_document(payload: bytes, message_type: descriptor.Descriptor) -> dict[str, Any]:
    """One message by its schema, as described in the module's docstring."""
    message = message_factory.GetMessageClass(message_type)()
    try:
        message.ParseFromString(payload)
    except DecodeError as error:
        raise MessageError(f"message does not parse as {message_type.full_name}: {error or 'invalid wire format'}") from None
    document = _as_dict(message)
    try:
        _restore_from_wire(document, message_type, payload, 0)
    except protowire.WireFormatError as error:  # protobuf accepted it, so this is a group or the like
        raise MessageError(f"message of {message_type.full_name} has a field replaydiff cannot read: {error}") from None
    return document


def _as_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def _restore_from_wire(document: dict[str, Any], message_type: descriptor.Descriptor, payload: bytes, depth: int) -> None:
    """Numbers for 64-bit integers, and what the wire holds that `json_format` left out (see the module's docstring)."""
    for field in message_type.fields:
        if field.cpp_type in _INT64 and field.name in document:
            document[field.name] = _integers(document[field.name])
    retyped: dict[str, list[Any]] = {}
    unknown: dict[str, list[Any]] = {}
    nested_seen: dict[str, int] = {}
    for wire in protowire.parse(payload):
        field = message_type.fields_by_number.get(wire.number)
        if field is None:
            unknown.setdefault(str(wire.number), []).append(wire_value(wire, depth))
        elif not _fits(field, wire.wire_type):
            retyped.setdefault(field.name, []).append(wire_value(wire, depth))
        elif _walkable(field) and depth < MAX_NESTING:
            index = nested_seen.get(field.name, 0)
            nested_seen[field.name] = index + 1
            target = document.get(field.name)
            if isinstance(target, list):
                target = target[index] if index < len(target) else None
            if isinstance(target, dict):
                _restore_from_wire(target, field.message_type, bytes(wire.value), depth + 1)  # type: ignore[arg-type]
    for name, values in retyped.items():
        field = message_type.fields_by_name[name]
        document[name] = values if field.is_repeated else values[-1]  # the last one wins, as in protobuf
    for number, values in unknown.items():  # a number seen again is a repeated field: an array, in wire order
        document[number] = values[0] if len(values) == 1 else values
    ordered = {field.name: document.pop(field.name) for field in message_type.fields if field.name in document}
    ordered.update(document)  # schema order for a reader, then the numbers the schema does not know
    document.clear()
    document.update(ordered)


def _fits(field: descriptor.FieldDescriptor, wire_type: int) -> bool:
    expected = _FIXED_TYPES.get(field.type) or _FITTING_WIRE_TYPES.get(field.cpp_type)
    if wire_type == expected:
        return True
    packable = field.is_repeated and expected != protowire.LENGTH_DELIMITED
    return packable and wire_type == protowire.LENGTH_DELIMITED


def _walkable(field: descriptor.FieldDescriptor) -> bool:
    """A message field whose JSON is its fields: not a map entry, not a well-known type `json_format` writes its own way."""
    if field.cpp_type != field.CPPTYPE_MESSAGE:
        return False
    message_type = field.message_type
    return not message_type.GetOptions().map_entry and not message_type.full_name.startswith("google.protobuf.")


def _integers(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    if isinstance(value, list):
        return [_integers(item) for item in value]
    return value


def wire_document(payload: bytes, depth: int = 0) -> dict[str, Any]:
    """One message without a schema, as described in the module's docstring."""
    try:
        fields = protowire.parse(payload)
    except protowire.WireFormatError as error:
        raise MessageError(f"message is not protobuf wire format: {error}") from None
    return _wire_fields(fields, depth)


def _wire_fields(fields: list[protowire.WireField], depth: int) -> dict[str, Any]:
    grouped: dict[str, list[Any]] = {}
    for field in fields:
        grouped.setdefault(str(field.number), []).append(wire_value(field, depth))
    return {number: values[0] if len(values) == 1 else values for number, values in grouped.items()}


def wire_value(field: protowire.WireField, depth: int) -> Any:
    if field.wire_type != protowire.LENGTH_DELIMITED:
        return field.value
    value = bytes(field.value)  # type: ignore[arg-type]
    if depth < MAX_NESTING and (nested := protowire.as_message(value)) is not None:
        return _wire_fields(nested, depth + 1)
    if (text := protowire.as_text(value)) is not None:
        return text
    return base64.b64encode(value).decode("ascii")


def compare_messages(
    left: Response, right: Response, method: GrpcMethod | None, rules: Mapping[str, ValueRule] | None = None
) -> list[Difference]:
    """Where two gRPC answers' messages differ, by field path; an answer that cannot be read is one difference."""
    if left.body == right.body:
        return []
    left_call, left_error = _decoded(left, method)
    right_call, right_error = _decoded(right, method)
    if left_call is None or right_call is None:
        if left_error == right_error:
            return []
        return [Difference("body", "", clip(left_error or _summary(left_call)), clip(right_error or _summary(right_call)))]
    note = WIRE_NOTE if left_call.schema_less else ""
    changes = json_changes(left_call.document, right_call.document, rules or {})
    return [Difference("body", change.path, change.left, change.right, note) for change in changes]


def _decoded(response: Response, method: GrpcMethod | None) -> tuple[DecodedCall | None, str | None]:
    try:
        return decode_call(response, method), None
    except MessageError as error:
        return None, str(error)


def _summary(call: DecodedCall | None) -> str:
    if call is None or call.document is None:
        return "no message"
    count = len(call.document) if isinstance(call.document, list) else 1
    return f"{count} message{'' if count == 1 else 's'} that parse"


def call_text(response: Response, method: GrpcMethod | None) -> str:
    """A gRPC answer's messages for reading: decoded, labelled with how, or why they could not be."""
    try:
        call = decode_call(response, method)
    except MessageError as error:
        return f"<{error}>"
    how = WIRE_NOTE.partition(";")[0] if call.schema_less else f"gRPC messages of {method.output.full_name}"  # type: ignore[union-attr]
    if call.document is None:
        return f"{how}: none"
    return f"{how}:\n{json.dumps(call.document, indent=2, ensure_ascii=False)}"


def request_messages_text(body: bytes, message_type: descriptor.Descriptor | None = None) -> str:
    """A gRPC request's messages for reading: by `message_type` (the method's input) when the schema is known, else
    by wire format."""
    try:
        if message_type is not None:
            documents = [schema_document(message.payload, message_type) for message in split_messages(body)]
        else:
            documents = [wire_document(message.payload) for message in split_messages(body)]
    except (GrpcFramingError, MessageError) as error:
        return f"<{error}>"
    shown = documents[0] if len(documents) == 1 else documents
    how = f"gRPC messages of {message_type.full_name}" if message_type is not None else WIRE_NOTE.partition(";")[0]
    return f"{how}:\n{json.dumps(shown, indent=2, ensure_ascii=False)}"
