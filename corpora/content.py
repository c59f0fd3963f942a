"""Content-Encoding, undone: bodies are compared and stored decoded, however they were captured or replayed."""

from __future__ import annotations

from mitmproxy.net import encoding as codecs

from replaydiff.corpora.model import Headers, header_value


def decoded_content(body: bytes, headers: Headers) -> tuple[bytes, str | None]:
    """The body with its Content-Encoding undone, and that encoding (None when it had none).

    mitmproxy's decoders (gzip, deflate raw or wrapped, br, zstd); raises ValueError when the body does not
    decode as its header says, so each caller decides what to keep and what to tell."""
    coding = (header_value(headers, "content-encoding") or "").strip().lower()
    if not body or coding in ("", "identity"):
        return body, None
    decoded = codecs.decode(body, coding)
    assert isinstance(decoded, bytes)
    return decoded, coding
