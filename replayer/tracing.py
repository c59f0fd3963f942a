"""W3C trace context for replayed requests.

Each (exchange, target) gets its own trace id and each attempt its own span
id, so a request can be found in the target's logs and traces. How a trace id
is split into exchange and target is the contract in `corpora.trace`.
"""

from __future__ import annotations

import hashlib
import secrets

from corpora.trace import EXCHANGE_DIGITS


def trace_id_for(run_salt: str, exchange_id: str, target: str) -> str:
    exchange_part = hashlib.sha256(f"{run_salt}\0{exchange_id}".encode()).hexdigest()[:EXCHANGE_DIGITS]
    target_part = hashlib.sha256(target.encode()).hexdigest()[: 32 - EXCHANGE_DIGITS]
    return exchange_part + target_part


def new_span_id() -> str:
    return secrets.token_hex(8)


def traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"

