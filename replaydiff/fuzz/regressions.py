"""The regression corpus: each shrunk divergence as an ordinary exchange that `replaydiff replay` can send again.

A corpus file is a sequence of compressed frames closed by an end marker, so
appending means rewriting: the old exchanges and the new ones go to a
temporary file that replaces the old one, and a crash leaves the old file
whole. A request already in the file (same id) is not added twice.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from replaydiff.corpora import CorpusReader, CorpusWriter, Exchange
from replaydiff.fuzz.session import Failure

SPACING_US = 10_000
"""Between consecutive exchanges, so a replay at recorded timing sends them one after another."""


def check_regression_corpus(path: Path) -> None:
    """Before a session: an existing file must be a corpus, or appending to it would fail only at the end."""
    if path.exists():
        CorpusReader(path)


def failure_exchange(failure: Failure, start_us: int) -> Exchange:
    request = failure.request
    digest = hashlib.sha256(f"{request.method} {request.target}\0".encode() + request.body).hexdigest()[:16]
    return Exchange(
        id=f"fuzz-{digest}",
        session=f"fuzz-{digest}",
        start_us=start_us,
        request=request,
        response=failure.baseline.response,
        tags={"fuzz": failure.signature, "endpoint": failure.endpoint},
    )


def append_failures(path: Path, failures: Iterable[Failure]) -> int:
    """Adds the failures not already in `path` (creating it if needed); returns how many were added."""
    existing = list(CorpusReader(path)) if path.exists() else []
    known = {exchange.id for exchange in existing}
    start = max((e.start_us for e in existing), default=-SPACING_US) + SPACING_US
    added: list[Exchange] = []
    for failure in failures:
        exchange = failure_exchange(failure, start + len(added) * SPACING_US)
        if exchange.id not in known:
            known.add(exchange.id)
            added.append(exchange)
    temporary = path.with_name(path.name + ".tmp")
    with CorpusWriter(temporary, source="replaydiff fuzz") as writer:
        for exchange in [*existing, *added]:
            writer.write(exchange)
    os.replace(temporary, path)
    return len(added)
