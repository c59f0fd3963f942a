"""A `curl` command line that sends exactly what a fuzz session sent, to one target.

Built with the replayer's own header rules (`outgoing_headers`), so the line
reproduces the request the target really got: the recorded Host, the
target's extra headers, no hop-by-hop headers. `--path-as-is` and `--globoff`
keep curl from normalizing a path or expanding brackets a fuzzer put there.
"""

from __future__ import annotations

import shlex

from replaydiff.corpora import Request
from replaydiff.replayer.client import outgoing_headers
from replaydiff.replayer.targets import Target


def curl_command(request: Request, target: Target) -> str:
    words = ["curl", "-sS", "-i", "--path-as-is", "--globoff", "-X", request.method, target.base_url + request.target]
    for name, value in outgoing_headers(request, target):
        words += ["-H", f"{name}: {value}"]
    if request.body:
        # Non-UTF-8 bytes cannot be spelled on a shell line; generated bodies are JSON, so this is the rare case.
        words += ["--data-binary", request.body.decode("utf-8", "replace")]
    return shlex.join(words)
