"""Protobuf messages field by field, without a schema: the wire format (protobuf.dev/programming-guides/encoding).

Used where no schema is known: the sanitizer masks string fields by pattern and writes the message back, the differ
shows field numbers and wire types. protobuf's own `UnknownFieldSet` reads this format but cannot write it back, so
this small reader/writer is ours; it handles the four wire types proto3 uses and refuses groups.
"""

from __future__ import annotations

from dataclasses import dataclass

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
WIRE_TYPE_NAMES = {VARINT: "varint", FIXED64: "fixed64", LENGTH_DELIMITED: "bytes", FIXED32: "fixed32"}
_MAX_FIELD_NUMBER = (1 << 29) - 1


class WireFormatError(ValueError):
    """Bytes that are not a protobuf message."""


@dataclass(slots=True)
class WireField:
    number: int
    wire_type: int
    value: int | bytes
    """An int for varint and fixed types (fixed ones unsigned, as on the wire), the raw bytes for length-delimited."""


def read_varint(data: bytes, offset: int) -> tuple[int, int]:
    """The varint at `offset` and the offset after it."""
    result = shift = 0
    while True:
        if offset >= len(data):
            raise WireFormatError("message ends inside a varint")
        byte = data[offset]
        offset += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, offset
        shift += 7
        if shift >= 70:
            raise WireFormatError("varint longer than 10 bytes")


def write_varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32/int64 values travel as their 64-bit two's complement
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def parse(payload: bytes) -> list[WireField]:
    """Every field of a message in wire order; `WireFormatError` if the bytes are not one."""
    fields: list[WireField] = []
    offset = 0
    while offset < len(payload):
        key, offset = read_varint(payload, offset)
        number, wire_type = key >> 3, key & 7
        if not 1 <= number <= _MAX_FIELD_NUMBER:
            raise WireFormatError(f"field number {number} is out of range")
        if wire_type == VARINT:
            value, offset = read_varint(payload, offset)
            fields.append(WireField(number, wire_type, value))
        elif wire_type in (FIXED64, FIXED32):
            size = 8 if wire_type == FIXED64 else 4
            if offset + size > len(payload):
                raise WireFormatError(f"message ends inside fixed field {number}")
            fields.append(WireField(number, wire_type, int.from_bytes(payload[offset : offset + size], "little")))
            offset += size
        elif wire_type == LENGTH_DELIMITED:
            length, offset = read_varint(payload, offset)
            if offset + length > len(payload):
                raise WireFormatError(f"field {number} says {length} bytes but {len(payload) - offset} follow")
            fields.append(WireField(number, wire_type, payload[offset : offset + length]))
            offset += length
        else:
            raise WireFormatError(f"field {number} has wire type {wire_type} (groups and unknown types)")
    return fields


def encode(fields: list[WireField]) -> bytes:
    """The message bytes of `fields`; `encode(parse(b)) == b` for every message `parse` accepts in canonical form."""
    out = bytearray()
    for field in fields:
        out += write_varint(field.number << 3 | field.wire_type)
        if field.wire_type == VARINT:
            out += write_varint(int(field.value))  # type: ignore[arg-type]
        elif field.wire_type == FIXED64:
            out += int(field.value).to_bytes(8, "little")  # type: ignore[arg-type]
        elif field.wire_type == FIXED32:
            out += int(field.value).to_bytes(4, "little")  # type: ignore[arg-type]
        else:
            value = bytes(field.value)  # type: ignore[arg-type]
            out += write_varint(len(value)) + value
    return bytes(out)


def as_message(value: bytes) -> list[WireField] | None:
    """The fields of a length-delimited value if it reads as a non-empty message, else None.

    Without a schema a nested message, a string and packed numbers share one wire type; a value that parses as a
    message and is not printable text is taken for one (the guess schema-less tools such as `protoc --decode_raw` make).
    """
    if not value or _printable(value):
        return None
    try:
        return parse(value) or None
    except WireFormatError:
        return None


def as_text(value: bytes) -> str | None:
    """The value as a string if it is valid UTF-8 (proto3 strings must be), else None."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _printable(value: bytes) -> bool:
    text = as_text(value)
    return text is not None and text.isprintable()
