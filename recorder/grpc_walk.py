"""gRPC bodies for the sanitizer: every message of a framed body walked like a JSON document, framing kept.

The generic walker would scan a gRPC body as free text and replace a value with one of another length, which
breaks both the protobuf length of the field and the gRPC length prefix. Here each message is decoded, walked and
encoded again, and the body re-framed:
- with a schema (`corpora.protobuf.ProtoSchema`, from `--proto-descriptor-set` and/or `--proto`), by field name: the message is walked as
  the JSON document its proto field names describe (`$.owner_email`, `$..*token*` rules apply), and string values by
  the value patterns; a rule on a field that cannot hold its replacement (a number, a nested message) clears it;
- without one, by the wire format (`corpora.protowire`): every length-delimited field that reads as a nested message
  is walked in turn, every other one that is UTF-8 text is scanned by the value patterns.
A message compressed with its `grpc-encoding` is decompressed first (gzip and deflate, gRPC's own codecs, bounded
in size) and compressed again only if something changed. A message in another encoding, or one that does not parse,
is left as it is and counted (`Judge.unread_grpc_message`); a body that does not split into messages is counted once
and left too.
"""

from __future__ import annotations

import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from replaydiff.corpora.grpc import GrpcFramingError, GrpcMessage, join_messages, split_messages
from replaydiff.corpora.protowire import LENGTH_DELIMITED, WireFormatError, as_message, as_text, encode, parse
from replaydiff.recorder.policy import JSON_ROOT
from replaydiff.recorder.walk import DROP, NO_RULE, Judge

UNREAD_RULE = "grpc-unread"
"""Fired-count name of gRPC messages the sanitizer could not read (an unknown compression, or not protobuf): stored
as sent."""

MAX_INFLATED = 64 * 1024 * 1024
"""A compressed message that inflates beyond this is not read (a decompression bomb stays a counted, unread message)."""

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
"""gRPC's message codecs (grpc-core compresses with zlib: `deflate` is the zlib format, `gzip` the gzip one)."""


def walk_grpc(body: bytes, judge: Judge, message_type: type[Message] | None, encoding: str | None = None) -> bytes:
    """The body itself when nothing changed; else the same messages, walked, in the same framing. `encoding` is the
    `grpc-encoding` header of the side that sent the body."""
    if not body:
        return body
    try:
        messages = split_messages(body)
    except GrpcFramingError:
        judge.unread_grpc_message()
        return body
    wbits = _WBITS.get((encoding or "").strip().lower())
    walked = [_message(message, judge, message_type, wbits) for message in messages]
    if all(new is old for new, old in zip(walked, messages, strict=True)):
        return body
    return join_messages(walked)


def _message(message: GrpcMessage, judge: Judge, message_type: type[Message] | None, wbits: int | None) -> GrpcMessage:
    payload = message.payload
    try:
        if message.compressed:
            if wbits is None:
                raise ValueError("compressed with an encoding we do not know")
            payload = _inflated(payload, wbits)
        walked = _by_schema(payload, message_type, judge) if message_type else _by_wire(payload, judge)
    except (DecodeError, WireFormatError, ValueError, zlib.error):
        judge.unread_grpc_message()
        return message
    if walked is payload:
        return message
    if message.compressed:
        assert wbits is not None
        return GrpcMessage(_deflated(walked, wbits), compressed=True)
    return GrpcMessage(walked)


def _inflated(payload: bytes, wbits: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    plain = inflater.decompress(payload, MAX_INFLATED)
    if inflater.unconsumed_tail or not inflater.eof:
        raise ValueError("compressed message too large or cut short")
    return plain


def _deflated(payload: bytes, wbits: int) -> bytes:
    deflater = zlib.compressobj(wbits=wbits)
    return deflater.compress(payload) + deflater.flush()


# --- without a schema: the wire format ----------------------------------------------------------


def _by_wire(payload: bytes, judge: Judge) -> bytes:
    fields = parse(payload)
    changed = False
    for wire_field in fields:
        if wire_field.wire_type != LENGTH_DELIMITED:
            continue
        value = wire_field.value
        assert isinstance(value, bytes)
        if as_message(value) is not None:
            new = _by_wire(value, judge)
        elif (text := as_text(value)) is not None:
            scanned = judge.scan(text)
            new = value if scanned == text else scanned.encode("utf-8")
        else:
            continue
        if new is not value and new != value:
            wire_field.value = new
            changed = True
    return encode(fields) if changed else payload


# --- with a schema: by field name ---------------------------------------------------------------


def _by_schema(payload: bytes, message_type: type[Message], judge: Judge) -> bytes:
    message = message_type.FromString(payload)
    return message.SerializeToString() if _walk_message(message, JSON_ROOT, judge) else payload


def _walk_message(message: Message, path: str, judge: Judge) -> bool:
    """Sanitizes `message` in place; True when something changed."""
    changed = False
    for descriptor, value in message.ListFields():
        step = judge.json_step(path, descriptor.name)
        if _is_map(descriptor):
            changed |= _walk_map(value, descriptor.message_type.fields_by_name["value"], step, judge)
        elif descriptor.is_repeated:
            changed |= _walk_repeated(value, descriptor, step, judge)
        else:
            new = _value(descriptor, value, step, judge)
            if new is value:
                continue
            changed = True
            if new is DROP or descriptor.type == FieldDescriptor.TYPE_MESSAGE or not _assigned(message, descriptor, new):
                message.ClearField(descriptor.name)
    return changed


def _assigned(message: Message, descriptor: FieldDescriptor, value: Any) -> bool:
    """False when the field cannot hold the value (a pseudonym out of an int32's range): the caller clears it."""
    try:
        setattr(message, descriptor.name, value)
    except (TypeError, ValueError):
        return False
    return True


def _walk_repeated(items: Any, descriptor: FieldDescriptor, path: str, judge: Judge) -> bool:
    changed = False
    for index in reversed(range(len(items))):  # from the end, so deleting an item keeps the others' indices
        item = items[index]
        new = _value(descriptor, item, judge.json_step(path, index), judge)
        if new is item:
            continue
        changed = True
        if new is DROP or descriptor.type == FieldDescriptor.TYPE_MESSAGE:
            del items[index]
            continue
        try:
            items[index] = new
        except (TypeError, ValueError):
            del items[index]
    return changed


def _walk_map(entries: Any, value_descriptor: FieldDescriptor, path: str, judge: Judge) -> bool:
    changed = False
    for key in list(entries):
        item = entries[key]
        new = _value(value_descriptor, item, judge.json_step(path, str(key)), judge)
        if new is item:
            continue
        changed = True
        if new is DROP or value_descriptor.type == FieldDescriptor.TYPE_MESSAGE:
            del entries[key]
            continue
        try:
            entries[key] = new
        except (TypeError, ValueError):
            del entries[key]
    return changed


def _value(descriptor: FieldDescriptor, value: Any, path: str, judge: Judge) -> Any:
    """`value` itself when unchanged; a nested message is changed in place and returned as itself. A replacement
    this field cannot hold (`[masked]` for a number, anything for a message or a bool) becomes `DROP`: cleared."""
    is_message = descriptor.type == FieldDescriptor.TYPE_MESSAGE
    verdict = judge.named("json", path, _plain(value) if is_message else value)
    if verdict is NO_RULE:
        if is_message:
            _walk_message(value, path, judge)
            return value
        if isinstance(value, str):
            scanned = judge.scan(value)
            return value if scanned == value else scanned
        return value
    if verdict is DROP or is_message:
        return DROP
    if descriptor.type == FieldDescriptor.TYPE_STRING:
        return str(verdict)
    if descriptor.type == FieldDescriptor.TYPE_BYTES:
        return str(verdict).encode("utf-8")
    fits_int = isinstance(verdict, int) and not isinstance(verdict, bool) and isinstance(value, int)
    fits_float = isinstance(verdict, float) and isinstance(value, float)
    return verdict if (fits_int or fits_float) and not isinstance(value, bool) else DROP


def _plain(message: Message) -> dict[str, Any]:
    """A nested message as JSON-like values, so a rule on it remembers its leaves (for their echoes)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _is_map(descriptor: FieldDescriptor) -> bool:
    return descriptor.type == FieldDescriptor.TYPE_MESSAGE and descriptor.message_type.GetOptions().map_entry
