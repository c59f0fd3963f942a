"""Tag client retries in recorded traffic, so a replay and a diff can tell them from new requests.

A request is a retry when it repeats a request that failed (no response, or
408, 429, 5xx; for gRPC, whose failures answer 200, the `grpc-status` codes
that mean the same: DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNKNOWN, INTERNAL,
UNAVAILABLE, DATA_LOSS) and starts within `window_s` after that failure ended. Two
requests are the same when they carry the same `Idempotency-Key`, or else the
same method, host, port, path, query and body. Sessions are not compared:
clients usually retry on a fresh connection after a reset or timeout.

A retry gets `retry_of` (the id of the first attempt, so every attempt of a
chain points at the same exchange) and `attempt` (2, 3, ...). Exchanges are fed
in the order they are recorded; only chains whose last attempt failed are
kept, and they expire after the window, so memory stays bounded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from replaydiff.corpora import Exchange, header_value
from replaydiff.corpora.grpc import grpc_status, is_grpc

DEFAULT_RETRY_WINDOW_S = 10.0
RETRY_OF = "retry_of"
ATTEMPT = "attempt"
_FAILED_STATUSES = frozenset({408, 429})
_FAILED_GRPC_STATUSES = frozenset({2, 4, 8, 13, 14, 15})
"""UNKNOWN, DEADLINE_EXCEEDED (like 408), RESOURCE_EXHAUSTED (like 429), INTERNAL, UNAVAILABLE, DATA_LOSS (like 5xx);
not the caller's own mistakes (INVALID_ARGUMENT, NOT_FOUND, …), which a retry would repeat."""
_PURGE_EVERY = 1024


@dataclass(slots=True)
class _Chain:
    first_id: str
    attempts: int
    failed_at_us: int


class RetryTagger:
    def __init__(self, *, window_s: float = DEFAULT_RETRY_WINDOW_S) -> None:
        self.window_us = round(window_s * 1_000_000)
        self._failed: dict[tuple[object, ...], _Chain] = {}
        self._seen = 0

    def tag(self, exchange: Exchange) -> Exchange:
        if self.window_us <= 0:
            return exchange
        self._seen += 1
        if self._seen % _PURGE_EVERY == 0:
            self._purge(exchange.start_us)
        if not self._failed and not _failed(exchange):
            return exchange  # nothing failed to be retried, nor to remember: the usual case needs no identity
        key = _identity(exchange)
        chain = self._failed.pop(key, None)
        if chain is not None and 0 <= exchange.start_us - chain.failed_at_us <= self.window_us:
            chain.attempts += 1
            tags = {**exchange.tags, RETRY_OF: chain.first_id, ATTEMPT: str(chain.attempts)}
            exchange = replace(exchange, tags=tags)
        else:
            chain = _Chain(exchange.id, 1, 0)
        if _failed(exchange):
            chain.failed_at_us = exchange.start_us + exchange.duration_us
            self._failed[key] = chain
        return exchange

    def _purge(self, now_us: int) -> None:
        expired = [key for key, chain in self._failed.items() if now_us - chain.failed_at_us > self.window_us]
        for key in expired:
            del self._failed[key]


def _failed(exchange: Exchange) -> bool:
    response = exchange.response
    if response is None or response.status >= 500 or response.status in _FAILED_STATUSES:
        return True
    return is_grpc(response.headers) and grpc_status(response) in _FAILED_GRPC_STATUSES


def _identity(exchange: Exchange) -> tuple[object, ...]:
    request = exchange.request
    if key := header_value(request.headers, "idempotency-key"):
        return ("idempotency-key", key)
    body = hashlib.sha256(request.body).digest()
    return (request.method, request.host, request.port, request.path, request.query, body)
