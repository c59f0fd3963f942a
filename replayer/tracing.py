"""W3C trace context for replayed requests.

Each (exchange, target) gets its own trace id and each attempt its own span
id, so a request can be found in the target's logs and traces. The trace id is
built so that anything downstream (the tap) can tell both halves apart: the
first 24 hex digits name the exchange (the same for every target, so seeded
faults hit baseline and candidate alike), the last 8 name the target.
"""

from __future__ import annotations

import hashlib
import secrets

EXCHANGE_DIGITS = 24


def trace_id_for(run_salt: str, exchange_id: str, target: str) -> str:
    exchange_part = hashlib.sha256(f"{run_salt}\0{exchange_id}".encode()).hexdigest()[:EXCHANGE_DIGITS]
    target_part = hashlib.sha256(target.encode()).hexdigest()[: 32 - EXCHANGE_DIGITS]
    return exchange_part + target_part


def exchange_key(trace_id: str) -> str:
    """The part of a trace id shared by every target's copy of one replayed exchange."""
    return trace_id[:EXCHANGE_DIGITS]


def new_span_id() -> str:
    return secrets.token_hex(8)


def traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"


def parse_traceparent(value: str) -> tuple[str, str] | None:
    """(trace id, parent span id) of a well-formed version-00 header, else None."""
    parts = value.strip().split("-")
    if len(parts) != 4 or parts[0] != "00" or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    return parts[1], parts[2]
