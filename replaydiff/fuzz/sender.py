"""Sends one request to baseline, baseline2 and candidate at the same moment, from synchronous code.

Hypothesis calls the property synchronously, so the sender owns one event
loop for the whole session and runs each send to completion on it; the
replayer's `TargetClient`s (one connection pool per target, no redirects
followed, failures as outcomes) live on that loop and are reused between
examples, which keeps a session at hundreds of examples per second.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from collections.abc import Awaitable, Iterable
from typing import NamedTuple, TypeVar

from replaydiff.corpora import ReplayRecord, Request
from replaydiff.replayer.client import TargetClient, Timeouts
from replaydiff.replayer.targets import Target, check_reachable


T = TypeVar("T")


class FuzzTargets(NamedTuple):
    baseline: Target
    baseline2: Target
    candidate: Target

    @classmethod
    def parse(cls, baseline: str, candidate: str, baseline2: str | None = None) -> FuzzTargets:
        """From URLs; the second baseline defaults to the baseline again (its noise is then the service's own)."""
        return cls(
            Target.parse("baseline", baseline),
            Target.parse("baseline2", baseline2 or baseline),
            Target.parse("candidate", candidate),
        )


class Answers(NamedTuple):
    baseline: ReplayRecord
    baseline2: ReplayRecord
    candidate: ReplayRecord


async def _all(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """`gather` from inside a coroutine, so it binds to the loop running it rather than a global one."""
    return await asyncio.gather(*awaitables)


class Sender:
    def __init__(self, targets: FuzzTargets, *, timeouts: Timeouts = Timeouts()) -> None:
        self.targets = targets
        self._loop = asyncio.new_event_loop()
        self._clients = self._loop.run_until_complete(self._open(timeouts))
        self._epoch_ns = time.perf_counter_ns()

    async def _open(self, timeouts: Timeouts) -> list[TargetClient]:
        """On the sender's loop: a client's connection pool belongs to the loop it was made on."""
        return [TargetClient(target, timeouts=timeouts, max_connections=4) for target in self.targets]

    def check_reachable(self) -> None:
        """A TCP connect to each target, so a typo in a URL is one line before the session, not N failures."""
        self._loop.run_until_complete(_all(check_reachable(target) for target in self.targets))

    def send(self, request: Request, endpoint: str) -> Answers:
        return Answers(*self._loop.run_until_complete(self._send(request, endpoint)))

    async def _send(self, request: Request, endpoint: str) -> list[ReplayRecord]:
        sent = await _all(client.send(request, epoch_ns=self._epoch_ns) for client in self._clients)
        return [
            ReplayRecord("fuzz", client.target.name, endpoint, [attempt], response)
            for client, (attempt, response) in zip(self._clients, sent, strict=True)
        ]

    def close(self) -> None:
        self._loop.run_until_complete(_all(client.aclose() for client in self._clients))
        self._loop.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
