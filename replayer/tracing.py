"""W3C trace context for replayed requests.

Each (exchange, target) gets its own trace id and each attempt its own span
id, so a request can be found in the target's logs and traces, and the
service's upstream calls can be attributed to the replayed request that caused
them.
"""

from __future__ import annotations

import secrets


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"
