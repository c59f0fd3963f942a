"""W3C trace context for replayed requests.

Each (exchange, target) gets its own trace id and each attempt its own span
id, so a request can be found in the target's logs and traces. How a trace id
is split into exchange and target is the contract in `corpora.trace`.
"""

from __future__ import annotations

import functools
import hashlib
import random

from replaydiff.corpora.trace import EXCHANGE_DIGITS, replay_exchange_key


def trace_id_for(run_salt: str, exchange_id: str, target: str, *, recorded: str = "") -> str:
    """`recorded`: the trace id the exchange carried when it was recorded (`corpora.trace.TRACE_TAG`); without
    a salt its exchange part is kept, so calls recorded under it (a mock's recording) name this exchange."""
    return replay_exchange_key(exchange_id, recorded=recorded, run_salt=run_salt) + _target_part(target)


@functools.lru_cache(maxsize=64)
def _target_part(target: str) -> str:
    return hashlib.sha256(target.encode()).hexdigest()[: 32 - EXCHANGE_DIGITS]


def new_span_id() -> str:
    """Unique enough to tell attempts apart, not a secret: no system call per attempt as `secrets` makes.
    Never all zeros, which W3C reserves as invalid."""
    return f"{random.getrandbits(64) or 1:016x}"


def traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"

