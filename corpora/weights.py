"""Weights: an exchange that stands for several (after `replaydiff corpus dedup`) carries a `weight` tag.

Replaying weights as counts (`replay --weighted`) sends copy N of an exchange in a session of its own,
`SESSION~wN`: a session that stood for k identical ones is replayed as k sessions again, and requests that
stood for many from other sessions are sent as concurrently as those sessions did.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from replaydiff.corpora.model import Exchange

WEIGHT_TAG = "weight"


def weight_of(exchange: Exchange) -> int:
    """1 for an exchange without a weight (or with a malformed one: it stands for itself)."""
    try:
        return max(1, int(exchange.tags.get(WEIGHT_TAG, 1)))
    except ValueError:
        return 1


def with_weights_expanded(exchanges: Iterable[Exchange]) -> Iterator[Exchange]:
    """Each exchange, followed by `weight − 1` copies with their own id and session and no weight tag."""
    for exchange in exchanges:
        weight = weight_of(exchange)
        if weight == 1:
            yield exchange
            continue
        tags = {key: value for key, value in exchange.tags.items() if key != WEIGHT_TAG}
        yield replace(exchange, tags=tags)
        for copy in range(1, weight):
            yield replace(exchange, id=f"{exchange.id}~w{copy}", session=f"{exchange.session}~w{copy}", tags=tags)
