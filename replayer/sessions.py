"""Per-session replay state, kept by session key for both engines.

A session's next request may come long after its last one, so its state (last
completion, learned ids) outlives its queue; but a corpus of a million sessions
must not keep a million states. Idle sessions beyond `keep` are forgotten,
oldest first; a session with work in flight never is.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

KEPT_SESSIONS = 100_000


def shard_of(session: str, shards: int) -> int:
    """Which of `shards` processes or workers replays a session: all of its requests go to one, so their
    order and learned ids hold. crc32 rather than `hash()`: the same on every process and machine."""
    return zlib.crc32(session.encode("utf-8")) % shards

S = TypeVar("S")


class SessionTable(Generic[S]):
    def __init__(self, make: Callable[[], S], *, busy: Callable[[S], bool], keep: int = KEPT_SESSIONS) -> None:
        self._make = make
        self._busy = busy
        self._keep = keep
        self._sessions: OrderedDict[str, S] = OrderedDict()

    def get(self, key: str) -> S:
        """The session's state, made on first use; marks it the most recently used."""
        session = self._sessions.get(key)
        if session is not None:
            self._sessions.move_to_end(key)
            return session
        session = self._sessions[key] = self._make()
        self._forget_idle()
        return session

    def _forget_idle(self) -> None:
        while len(self._sessions) > self._keep:
            oldest_key, oldest = next(iter(self._sessions.items()))
            if self._busy(oldest):
                return
            del self._sessions[oldest_key]

    def __iter__(self) -> Iterator[S]:
        return iter(self._sessions.values())
