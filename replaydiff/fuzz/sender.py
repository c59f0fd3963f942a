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

from replaydiff.corpora import Exchange, ReplayRecord, Request, Response
from replaydiff.replayer.client import TargetClient, Timeouts, TLSOptions
from replaydiff.replayer.credentials import Credentials
from replaydiff.replayer.targets import Target, check_reachable


T = TypeVar("T")


class FuzzTargets(NamedTuple):
    baseline: Target
    baseline2: Target
    candidate: Target

    @classmethod
    def parse(
        cls, baseline: str, candidate: str, baseline2: str | None = None, headers: list[tuple[str, str]] | None = None
    ) -> FuzzTargets:
        """From URLs; the second baseline defaults to the baseline again (its noise is then the service's own).
        `headers` (`--header`) go to every target, replacing same-named generated ones."""
        return cls(
            Target.parse("baseline", baseline, headers),
            Target.parse("baseline2", baseline2 or baseline, headers),
            Target.parse("candidate", candidate, headers),
        )


class Answers(NamedTuple):
    baseline: ReplayRecord
    baseline2: ReplayRecord
    candidate: ReplayRecord


async def _all(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """`gather` from inside a coroutine, so it binds to the loop running it rather than a global one."""
    return await asyncio.gather(*awaitables)


class Sender:
    def __init__(
        self, targets: FuzzTargets, *, timeouts: Timeouts = Timeouts(), credentials: Credentials | None = None,
        tls: TLSOptions = TLSOptions(),
    ) -> None:
        self.targets = targets
        self.credentials = credentials
        self._loop = asyncio.new_event_loop()
        self._clients = self._loop.run_until_complete(self._open(timeouts, tls))
        self._epoch_ns = time.perf_counter_ns()

    async def _open(self, timeouts: Timeouts, tls: TLSOptions) -> list[TargetClient]:
        """On the sender's loop: a client's connection pool belongs to the loop it was made on."""
        return [TargetClient(target, timeouts=timeouts, tls=tls, max_connections=4) for target in self.targets]

    def check_reachable(self) -> None:
        """A TCP connect to each target, so a typo in a URL is one line before the session, not N failures."""
        self._loop.run_until_complete(_all(check_reachable(target) for target in self.targets))

    def log_in(self) -> None:
        """Every login account on every target, once, before the first example (a failed login is one line)."""
        if self.credentials is None:
            return
        clients = {client.target.name: client for client in self._clients}

        async def send(target: Target, login: Request) -> Response | None:
            return (await clients[target.name].send(login, epoch_ns=self._epoch_ns))[1]

        self._loop.run_until_complete(self.credentials.prepare(list(self.targets), send))

    def _authenticated(self, request: Request, target: str) -> Request:
        """A generated request as a test account's (its recorded principal's, else the first account's)."""
        if self.credentials is None:
            return request
        return self.credentials.rewrite(Exchange("fuzz", "fuzz", 0, request, None), request, target, anyone=True)

    def send(self, request: Request, endpoint: str) -> Answers:
        return Answers(*self._loop.run_until_complete(self._send(request, endpoint)))

    async def _send(self, request: Request, endpoint: str) -> list[ReplayRecord]:
        sent = await _all(
            client.send(self._authenticated(request, client.target.name), epoch_ns=self._epoch_ns)
            for client in self._clients
        )
        records = [
            ReplayRecord("fuzz", client.target.name, endpoint, [attempt], response)
            for client, (attempt, response) in zip(self._clients, sent, strict=True)
        ]
        return records if self.credentials is None else [self.credentials.masked(record) for record in records]

    def close(self) -> None:
        self._loop.run_until_complete(_all(client.aclose() for client in self._clients))
        self._loop.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
