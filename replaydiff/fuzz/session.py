"""A fuzz session: hypothesis generates requests per endpoint, the targets answer, the judge decides.

Hypothesis has no wall-clock budget, so a session runs in rounds: each
endpoint in turn gets up to `round_size` examples, with a seed derived from
the session's seed, the endpoint and the round number; the time budget is
checked between rounds. An endpoint that diverged is not fuzzed further
(its divergences are already shrunk), the others go on.

Hypothesis tells bugs apart by exception type and line. The property raises
one `Divergent` subclass per divergence signature, so two different bugs on
one endpoint (a 500 for a coupon, a 500 for a zero quantity) are each shrunk
to their own minimal request instead of the shrinker sliding from one to the
other.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Protocol

from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.strategies import SearchStrategy

from replaydiff.corpora import ReplayRecord, Request
from replaydiff.corpora.protobuf import ProtoSchema
from replaydiff.diff.difference import Difference
from replaydiff.fuzz.infer import EndpointShape
from replaydiff.fuzz.sender import Sender
from replaydiff.fuzz.strategies import requests
from replaydiff.fuzz.verdict import NoiseJudge, signature

HYPOTHESIS_HOME = Path(".replaydiff/hypothesis")
"""Hypothesis's own directory for `replaydiff fuzz`: in the project, never the user's home or `./.hypothesis`."""
DEFAULT_DATABASE = HYPOTHESIS_HOME / "examples"
"""Where failing examples are kept between runs, so a rerun replays them first."""


@dataclass(frozen=True, slots=True)
class FuzzOptions:
    examples: int = 100
    """Per endpoint."""
    seed: int | None = None
    """None: a fresh one, printed so the run can be repeated."""
    time_budget_s: float = 300.0
    confirmations: int = 3
    """Resends a suspect must diverge on again before it is a divergence."""
    database: Path | None = DEFAULT_DATABASE
    round_size: int = 25
    label: str = ""
    """Separates this corpus's saved examples from another corpus's in the database."""


@dataclass(slots=True)
class Failure:
    """A shrunk divergence: the minimal request and what baseline and candidate answered to it."""

    endpoint: str
    signature: str
    request: Request
    baseline: ReplayRecord
    candidate: ReplayRecord
    differences: list[Difference]


@dataclass(slots=True)
class SessionResult:
    seed: int
    endpoints: int
    examples: int = 0
    elapsed_s: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    schema: ProtoSchema | None = None
    """The schema gRPC messages were compared by (given, or the baseline's by reflection): the report reads them by
    it too."""

    @property
    def rate(self) -> float:
        return self.examples / self.elapsed_s if self.elapsed_s > 0 else 0.0


class Progress(Protocol):
    def endpoint(self, endpoint: str) -> None: ...
    def example(self) -> None: ...
    def divergence(self, signature: str) -> None: ...


class Divergent(Exception):
    signature: ClassVar[str] = ""

    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure.endpoint}: {failure.signature}")
        self.failure = failure


@lru_cache(maxsize=None)
def divergent_type(signature: str) -> type[Divergent]:
    """One exception class per signature: hypothesis shrinks each class as a bug of its own."""
    return type("Divergent", (Divergent,), {"signature": signature, "__module__": __name__})


def round_seed(session_seed: int, endpoint: str, number: int) -> int:
    digest = hashlib.sha256(f"{session_seed}\0{endpoint}\0{number}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class FuzzSession:
    def __init__(
        self, shapes: list[EndpointShape], sender: Sender, judge: NoiseJudge, options: FuzzOptions, progress: Progress
    ) -> None:
        self._shapes = shapes
        self._sender = sender
        self._judge = judge
        self._options = options
        self._progress = progress
        self._strategies: dict[str, SearchStrategy[Request]] = {s.endpoint: requests(s) for s in shapes}
        self._database = DirectoryBasedExampleDatabase(options.database) if options.database else None
        self._examples_run = 0
        self._diverged: set[str] = set()

    def run(self) -> SessionResult:
        session_seed = self._options.seed if self._options.seed is not None else random.randrange(2**32)
        result = SessionResult(seed=session_seed, endpoints=len(self._shapes))
        started = time.monotonic()
        deadline = started + self._options.time_budget_s
        for shape, number, examples in self._rounds():
            if time.monotonic() >= deadline:
                break
            self._progress.endpoint(shape.endpoint)
            found = self._round(shape, round_seed(session_seed, shape.endpoint, number), examples)
            known = {f.signature for f in result.failures}
            result.failures += [f for f in found if f.signature not in known]
        result.examples = self._examples_run
        result.elapsed_s = time.monotonic() - started
        return result

    def _rounds(self) -> Iterator[tuple[EndpointShape, int, int]]:
        """(endpoint, round number, examples) in turn, until each endpoint had its examples or diverged."""
        left = {shape.endpoint: self._options.examples for shape in self._shapes}
        number = 0
        while any(left.values()):
            for shape in self._shapes:
                examples = min(self._options.round_size, left[shape.endpoint])
                if examples:
                    left[shape.endpoint] -= examples
                    yield shape, number, examples
                if shape.endpoint in self._diverged:
                    left[shape.endpoint] = 0
            number += 1

    def _round(self, shape: EndpointShape, round_seed_: int, examples: int) -> list[Failure]:
        def check(request: Request) -> None:
            self._check(shape, request)

        check._hypothesis_internal_add_digest = f"{self._options.label}\0{shape.endpoint}".encode()  # type: ignore[attr-defined]
        # `seed` also switches the database off (hypothesis assumes a seeded run wants no replay); settings
        # applied after it switch it back on: here the seed drives generation, the database replays failures.
        test = self._settings(examples)(seed(round_seed_)(given(self._strategies[shape.endpoint])(check)))
        try:
            test()
        except Exception as exc:  # noqa: BLE001 - only divergences are expected; anything else is re-raised
            failures = divergences_in(exc)
            self._diverged.add(shape.endpoint)
            return failures
        return []

    def _settings(self, examples: int) -> settings:
        return settings(
            max_examples=examples,
            deadline=None,  # a network round trip has no meaningful deadline
            database=self._database,
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,  # the session reports failures itself, with both answers and curl lines
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
            report_multiple_bugs=True,
            print_blob=False,
        )

    def _check(self, shape: EndpointShape, request: Request) -> None:
        """The property: raises a `Divergent` when the candidate's answer is not equivalent to the baseline's."""
        self._examples_run += 1
        self._progress.example()
        answers = self._sender.send(request, shape.endpoint)
        suspects = self._judge.suspects(shape.endpoint, *answers)
        for _ in range(self._options.confirmations):
            if not suspects:
                return
            answers = self._sender.send(request, shape.endpoint)
            suspects = self._judge.confirmed(shape.endpoint, suspects, *answers)
        if not suspects:
            return
        name = signature(suspects, answers.candidate)
        failure = Failure(shape.endpoint, name, request, answers.baseline, answers.candidate, suspects)
        self._progress.divergence(failure.signature)
        raise divergent_type(failure.signature)(failure)


def divergences_in(exc: BaseException) -> list[Failure]:
    """The failures hypothesis re-raised after shrinking (alone, or grouped when several); anything else is a bug."""
    if isinstance(exc, Divergent):
        return [exc.failure]
    if isinstance(exc, BaseExceptionGroup):
        matched, rest = exc.split(Divergent)
        if rest is None and matched is not None:
            return [failure for inner in matched.exceptions for failure in divergences_in(inner)]
    raise exc
