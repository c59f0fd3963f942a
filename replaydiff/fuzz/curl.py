"""A `curl` command line that sends exactly what a fuzz session sent, to one target.

Built with the replayer's own header rules (`outgoing_headers`), so the line
reproduces the request the target really got: the recorded Host, the
target's extra headers, no hop-by-hop headers. `--path-as-is` and `--globoff`
keep curl from normalizing a path or expanding brackets a fuzzer put there.
"""

from __future__ import annotations

import shlex

from replaydiff.corpora import Request
from replaydiff.corpora.grpc import is_grpc
from replaydiff.replayer.client import outgoing_headers
from replaydiff.replayer.targets import Target


def curl_command(request: Request, target: Target) -> str:
    words = ["curl", "-sS", "-i", "--path-as-is", "--globoff", "-X", request.method, target.base_url + request.target]
    http2 = request.http_version.upper().startswith("HTTP/2")
    if http2:  # cleartext HTTP/2 (h2c) as the replayer sends it, or ALPN h2 over TLS
        words.insert(1, "--http2" if target.base_url.startswith("https") else "--http2-prior-knowledge")
    for name, value in outgoing_headers(request, target):
        words += ["-H", f"{name}: {value}"]
    if http2 and is_grpc(request.headers):
        words += ["-H", "te: trailers"]  # gRPC requires it; a hop-by-hop header to the HTTP/1.1 rules
    if not request.body:
        return shlex.join(words)
    text = request.body.decode("utf-8", "replace")
    if text.isprintable():
        return shlex.join([*words, "--data-binary", text])
    # Binary bodies (gRPC's framed messages) cannot be spelled as one argument: printf writes them byte for byte.
    return f"printf {shlex.quote(printf_escaped(request.body))} | {shlex.join([*words, '--data-binary', '@-'])}"


def printf_escaped(body: bytes) -> str:
    """Octal escapes (POSIX printf has no `\\x`) for every byte that is not printable ASCII, and for `\\`, `%` and
    `-` (a format starting with `-` would be read as an option)."""
    return "".join(chr(b) if 32 <= b < 127 and b not in (0x5C, 0x25, 0x2D) else f"\\{b:03o}" for b in body)
