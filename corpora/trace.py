"""The trace-id contract between the replayer (which writes `traceparent`) and the tap (which reads it).

The replayer gives each (exchange, target) its own W3C trace id, built so that
the first 24 hex digits name the exchange (the same for every target, so seeded
faults hit baseline and candidate alike) and the last 8 name the target.
"""

from __future__ import annotations

import functools
import hashlib

EXCHANGE_DIGITS = 24


def exchange_key(trace_id: str) -> str:
    """The part of a trace id shared by every target's copy of one replayed exchange."""
    return trace_id[:EXCHANGE_DIGITS]


def replay_exchange_key(exchange_id: str, *, recorded: str = "", run_salt: str = "") -> str:
    """The exchange part of the trace ids a replay sends for a corpus exchange: the recorded trace id's (the
    exchange tag `TRACE_TAG`), so the calls recorded under it name this exchange, unless a salt asks for
    fresh ones; else derived from the salt and the exchange id."""
    if recorded and not run_salt and len(recorded) == 32:
        return exchange_key(recorded)
    return _derived_exchange_key(run_salt, exchange_id)


@functools.lru_cache(maxsize=256)
def _derived_exchange_key(run_salt: str, exchange_id: str) -> str:
    """Cached because every target of one exchange asks for it in turn."""
    return hashlib.sha256(f"{run_salt}\0{exchange_id}".encode()).hexdigest()[:EXCHANGE_DIGITS]


def parse_traceparent(value: str) -> tuple[str, str]:
    """(trace id, parent span id) of a `traceparent` header; empty strings when it is missing or malformed.

    Lenient about the version and the span id: only a 32-digit trace id is needed to attribute a call.
    """
    parts = value.strip().split("-")
    return (parts[1], parts[2]) if len(parts) == 4 and len(parts[1]) == 32 else ("", "")


TRACE_TAG = "trace_id"
"""Exchange tag: the trace id the recorded request carried (its own `traceparent`, or the one the recorder
injected). A replay keys the exchange by it, so the dependency calls recorded with it find their exchange."""
