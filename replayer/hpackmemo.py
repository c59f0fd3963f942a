"""HPACK without a dynamic table, so header fields and blocks are encoded and decoded once, then looked up.

Why: hpack (the library under h2) is pure Python, and its encoder searches its
dynamic table field by field; with its decoder it was over half of the
replay's time per HTTP/2 request (bench/README.md). A replay sends the same
few fields over and over, and targets answer with the same few header blocks,
so both sides are memoized, which HPACK allows only where the encoding of a
field does not depend on the connection's history:

- We encode each field as a static-table index or a literal *without
  indexing* (RFC 7541 6.1, 6.2.2), never adding to our dynamic table: the
  bytes of a field are then the same on every connection, computed once.
  That is a legal encoder (using the dynamic table is the encoder's choice);
  a header block costs a few more bytes on the wire.
- We ask peers for a dynamic table of size 0 (SETTINGS_HEADER_TABLE_SIZE, in
  the preface's SETTINGS: `http2.H2Session`). Once a peer has acknowledged
  it, its header blocks cannot refer to earlier ones, so a block decodes to
  the same fields wherever it comes, and is decoded once.

hpack's own classes do the rest (integers, strings, table size updates,
every check a decoder makes).
"""

from __future__ import annotations

from collections.abc import Iterable

import hpack
from hpack.hpack import encode_integer
from hpack.table import HeaderTable

MEMO_SIZE = 4096
"""Fields and blocks remembered at most, per connection; the memo starts afresh when full."""

_PER_REQUEST = {b"traceparent": b"\x00" + len(b"traceparent").to_bytes(1, "big") + b"traceparent"}
"""Fields unique to one request, not worth remembering: the start of each one's literal (without indexing, its
name as a literal too: not in the static table)."""

_SENSITIVE = frozenset({b"authorization", b"proxy-authorization", b"cookie"})
"""Encoded as never-indexed literals (RFC 7541 7.1.3): intermediaries must not index them either."""

_STATIC_FIELDS = {field: index for index, field in reversed(list(enumerate(HeaderTable.STATIC_TABLE, 1)))}
_STATIC_NAMES = {name: index for (name, _), index in reversed(list(_STATIC_FIELDS.items()))}


def _string(value: bytes) -> bytes:
    """A string literal without Huffman coding (H bit 0)."""
    if len(value) < 0x7F:  # the length fits the prefix: one byte (the per-request traceparent's path)
        return len(value).to_bytes(1, "big") + value
    return bytes(encode_integer(len(value), 7)) + value


def encode_field(name: bytes, value: bytes) -> bytes:
    """One field's HPACK bytes, independent of any table state."""
    if (index := _STATIC_FIELDS.get((name, value))) is not None:
        prefix = encode_integer(index, 7)
        prefix[0] |= 0x80  # indexed header field
        return bytes(prefix)
    flag = 0x10 if name in _SENSITIVE else 0x00  # never indexed, else without indexing
    if (index := _STATIC_NAMES.get(name)) is not None:
        prefix = encode_integer(index, 4)
        prefix[0] |= flag
        return bytes(prefix) + _string(value)
    return bytes([flag]) + _string(name) + _string(value)


class StatelessEncoder(hpack.Encoder):
    """An hpack `Encoder` that never indexes: each field's bytes come from `encode_field`, remembered."""

    def __init__(self) -> None:
        super().__init__()
        self._fields: dict[tuple[bytes, bytes], bytes] = {}
        self._announce = True
        """The first block says our table is empty and stays so."""

    def encode(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = True) -> bytes:  # type: ignore[override]
        parts = []
        if self._announce or self.table_size_changes:  # or the peer changed the largest table it allows
            parts.append(b"\x20")  # dynamic table size update to 0
            self._announce = False
            self.table_size_changes.clear()
        fields = self._fields
        for name, value in headers:
            try:
                parts.append(fields[(name, value)])
            except KeyError:
                if (start := _PER_REQUEST.get(name)) is not None:
                    parts.append(start + _string(value))
                    continue
                encoded = encode_field(name, value)
                if len(fields) >= MEMO_SIZE:
                    fields.clear()
                fields[(name, value)] = encoded
                parts.append(encoded)
        return b"".join(parts)


class MemoDecoder(hpack.Decoder):
    """An hpack `Decoder` that remembers what each header block decoded to, once the peer may no longer use a
    dynamic table (we allow it none, and it acknowledged that); until then it decodes every block."""

    def __init__(self, max_header_list_size: int) -> None:
        super().__init__(max_header_list_size=max_header_list_size)
        self._blocks: dict[bytes, list[tuple[bytes, bytes]]] = {}

    def decode(self, data: bytes, raw: bool = False) -> list[tuple[bytes, bytes]]:  # type: ignore[override]
        if not raw or self.max_allowed_table_size or self.header_table.maxsize:
            return super().decode(data, raw)  # type: ignore[return-value]
        block = bytes(data)
        if (known := self._blocks.get(block)) is not None:
            return list(known)
        headers = super().decode(block, raw=True)
        if len(self._blocks) >= MEMO_SIZE:
            self._blocks.clear()
        self._blocks[block] = list(headers)  # type: ignore[arg-type]
        return headers  # type: ignore[return-value]
