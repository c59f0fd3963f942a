"""`corpus sample`: a smaller corpus of whole sessions, chosen by a seeded hash of the session key.

A session is never cut, so a stateful flow (create an order, then read it by the id the service returned)
still replays. The choice depends only on the seed and the session keys, so the same seed picks the same
sessions from the same corpus, and a session is picked alike from every file it appears in.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from replaydiff.corpora import endpoint_of
from replaydiff.curation.streams import CuratedWriter, check_output, exchanges, record_session, records, session_of
from replaydiff.errors import UserError


def session_rank(seed: int, session: str) -> float:
    """A uniform number in [0, 1) fixed by the seed and the session key."""
    digest = hashlib.blake2b(f"{seed}\0{session}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True, slots=True)
class SampleSpec:
    rate: float | None = None
    sessions: int | None = None
    per_endpoint: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        given = [v is not None for v in (self.rate, self.sessions, self.per_endpoint)]
        if sum(given) != 1:
            raise UserError("corpus sample: give exactly one of --rate, --sessions and --per-endpoint")


@dataclass(frozen=True, slots=True)
class Sampled:
    sessions_before: int
    sessions_kept: int
    exchanges_before: int
    exchanges_kept: int


def _by_sessions(corpus: Path, count: int, seed: int) -> tuple[set[str], int, int]:
    """The `count` sessions of lowest rank (bottom-k): a uniform choice in memory proportional to `count`."""
    heap: list[tuple[float, str]] = []  # max-heap on rank by negation
    held: set[str] = set()
    seen: set[str] = set()
    total = 0
    for exchange in exchanges(corpus):
        total += 1
        key = session_of(exchange)
        seen.add(key)
        if key in held:
            continue
        rank = session_rank(seed, key)
        if len(heap) < count:
            heapq.heappush(heap, (-rank, key))
            held.add(key)
        elif rank < -heap[0][0]:
            _, dropped = heapq.heapreplace(heap, (-rank, key))
            held.discard(dropped)
            held.add(key)
    return held, len(seen), total


def _by_endpoint(corpus: Path, per_endpoint: int, seed: int) -> tuple[set[str], int, int]:
    """Sessions in rank order, each kept while it brings an endpoint closer to `per_endpoint` exchanges."""
    profiles: dict[str, Counter[str]] = {}
    total = 0
    for exchange in exchanges(corpus):
        total += 1
        profiles.setdefault(session_of(exchange), Counter())[
            endpoint_of(exchange.request.method, exchange.request.path)
        ] += 1
    have: Counter[str] = Counter()
    keep: set[str] = set()
    for key in sorted(profiles, key=lambda k: (session_rank(seed, k), k)):
        endpoints = profiles[key]
        if any(have[endpoint] < per_endpoint for endpoint in endpoints):
            keep.add(key)
            have.update(endpoints)
    return keep, len(profiles), total


def sample(corpus: Path, output: Path, spec: SampleSpec) -> Sampled:
    check_output(output, corpus)
    curation = {"job": "sample", "rate": spec.rate, "sessions": spec.sessions,
                "per_endpoint": spec.per_endpoint, "seed": spec.seed}  # fmt: skip
    if spec.rate is not None:
        rate = spec.rate
        seen: set[str] = set()
        kept_sessions: set[str] = set()
        total = 0
        with CuratedWriter(output, sources=[corpus], curation=curation) as writer:
            for exchange in exchanges(corpus):
                total += 1
                key = session_of(exchange)
                seen.add(key)
                if session_rank(spec.seed, key) < rate:
                    kept_sessions.add(key)
                    writer.write(exchange.to_json())
            kept = writer.count
        return Sampled(len(seen), len(kept_sessions), total, kept)
    if spec.sessions is not None:
        keep, sessions, total = _by_sessions(corpus, spec.sessions, spec.seed)
    else:
        assert spec.per_endpoint is not None
        keep, sessions, total = _by_endpoint(corpus, spec.per_endpoint, spec.seed)
    with CuratedWriter(output, sources=[corpus], curation=curation) as writer:
        for record in records(corpus, quiet=True):
            if record_session(record) in keep:
                writer.write(record)
        kept = writer.count
    return Sampled(sessions, len(keep), total, kept)
