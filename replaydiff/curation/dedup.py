"""`corpus dedup`: one representative, with a `weight`, for requests that are the same after normalization.

Two steps, both keeping sessions replayable:
1. A session whose every request (normalized, in order) equals an earlier session's collapses into it:
   the earlier one's exchanges are weighted by how many sessions it stands for.
2. In the sessions left, a request with a safe method (GET, HEAD, OPTIONS) that repeats an earlier kept one
   is dropped and counted in that one's weight. Requests that change state are never dropped from a session
   that stays, since the session's later requests may depend on them.

Normalization (`shapes.canonical_request`): endpoint template, query keys and values, canonical JSON body,
headers without volatile ones (credentials, tracing, dates), and the status production answered.
`replay --weighted` sends weights as counts. Three streaming passes; memory grows with sessions and with
distinct requests, not with exchanges.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replaydiff.corpora import Exchange
from replaydiff.corpora.weights import WEIGHT_TAG, weight_of
from replaydiff.curation.coverage import endpoint_of_exchange
from replaydiff.curation.shapes import canonical_request
from replaydiff.curation.streams import CuratedWriter, check_output, exchanges, record_session, records, session_of

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Deduplicated:
    exchanges_before: int
    exchanges_kept: int
    sessions_before: int
    sessions_collapsed: int
    represented: int
    """The sum of the kept exchanges' weights: what `--weighted` replays."""


def _digest(exchange: Exchange) -> bytes:
    canonical = canonical_request(exchange, endpoint_of_exchange(exchange))
    return hashlib.blake2b(canonical + weight_of(exchange).to_bytes(8, "big"), digest_size=16).digest()


def dedup(corpus: Path, output: Path) -> Deduplicated:
    check_output(output, corpus)
    # Pass 1: each session's signature, a running hash of its normalized requests in order.
    signatures: dict[str, Any] = {}
    total = 0
    for exchange in exchanges(corpus):
        total += 1
        signatures.setdefault(session_of(exchange), hashlib.blake2b(digest_size=16)).update(_digest(exchange))
    representative: dict[bytes, str] = {}
    session_weight: dict[str, int] = {}
    for key, running in signatures.items():
        signature = running.digest()
        first = representative.setdefault(signature, key)
        session_weight[first] = session_weight.get(first, 0) + 1
    sessions_before = len(signatures)
    del signatures, representative
    # Pass 2: in the sessions that stay, which exchanges represent which.
    first_seen: dict[bytes, str] = {}
    weights: dict[str, int] = {}
    for exchange in exchanges(corpus):
        key = session_of(exchange)
        if key not in session_weight:
            continue
        weight = weight_of(exchange) * session_weight[key]
        if exchange.request.method.upper() in SAFE_METHODS:
            digest = _digest(exchange)
            first_id = first_seen.setdefault(digest, exchange.id)
            weights[first_id] = weights.get(first_id, 0) + weight
        else:
            weights[exchange.id] = weights.get(exchange.id, 0) + weight
    # Pass 3: write the representatives with their weights.
    curation = {"job": "dedup", "exchanges_before": total}
    represented = 0
    with CuratedWriter(output, sources=[corpus], curation=curation) as writer:
        for record in records(corpus, quiet=True):
            if record_session(record) not in session_weight:
                continue
            weight = weights.get(str(record["id"]))
            if weight is None:
                continue
            tags = {key: value for key, value in record.get("tags", {}).items() if key != WEIGHT_TAG}
            if weight > 1:
                tags[WEIGHT_TAG] = str(weight)
            record = {**record, "tags": tags} if tags else {k: v for k, v in record.items() if k != "tags"}
            writer.write(record)
            represented += weight
            weights.pop(str(record["id"]))  # an id recorded twice keeps its first occurrence
        kept = writer.count
    return Deduplicated(total, kept, sessions_before, sessions_before - len(session_weight), represented)
