"""A fuzz session end to end: corpus → shapes → safety checks → session → regression corpus.

Shared by `replaydiff fuzz` and the pytest helper, so a session in CI behaves
exactly like one at the terminal. Every check that can fail on the user's
input runs before the first request is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from replaydiff.corpora import CorpusReader
from replaydiff.corpora.endpoints import corpus_endpoints
from replaydiff.corpora.protobuf import ProtoSchema, ReflectionUnavailable, reflect_schema
from replaydiff.diff.rules import Rules
from replaydiff.replayer.client import Timeouts, TLSOptions
from replaydiff.replayer.targets import MUTATING_METHODS, check_write_safety
from replaydiff.errors import UserError
from replaydiff.fuzz.infer import EndpointShape, infer_endpoints, select
from replaydiff.fuzz.regressions import append_failures, check_regression_corpus
from replaydiff.fuzz.sender import FuzzTargets, Sender
from replaydiff.replayer.credentials import Credentials
from replaydiff.fuzz.session import FuzzOptions, FuzzSession, Progress, SessionResult
from replaydiff.fuzz.verdict import NoiseJudge


@dataclass(frozen=True, slots=True)
class FuzzJob:
    corpus: Path
    targets: FuzzTargets
    endpoints: tuple[str, ...] = ()
    """Globs; empty: every endpoint of the corpus."""
    options: FuzzOptions = field(default_factory=FuzzOptions)
    rules: Rules = field(default_factory=Rules)
    allowed_hosts: frozenset[str] = frozenset()
    save_failures: Path | None = None
    timeouts: Timeouts = Timeouts(connect_s=5.0, read_s=10.0)
    credentials: Credentials | None = None
    """`--identities`, `--jwt-key`: generated requests go out as a test account's."""
    schema: ProtoSchema | None = None
    """`--proto-descriptor-set`, `--proto`: gRPC requests are generated from their methods' input types."""
    reflection: bool = True
    """Without `schema`, ask the baseline for it by server reflection when the corpus holds gRPC calls."""
    tls: TLSOptions = TLSOptions()
    """`--ca-cert`, `--insecure`: how https targets are trusted (the requests and reflection)."""


def endpoint_shapes(job: FuzzJob) -> list[EndpointShape]:
    shapes = infer_endpoints(CorpusReader(job.corpus), job.rules.patterns.with_learned(corpus_endpoints(job.corpus)))
    if not shapes:
        raise UserError(f"{job.corpus}: the corpus has no exchanges to learn requests from")
    selected = select(shapes, job.endpoints)
    if not selected:
        raise UserError(
            f"no endpoint of {job.corpus} matches --endpoint {' '.join(job.endpoints)}; "
            f"its endpoints are: {', '.join(shapes)}"
        )
    return selected


def with_schema(shapes: list[EndpointShape], schema: ProtoSchema | None) -> list[EndpointShape]:
    """Each gRPC shape gets its method's input type; a client-streaming method (one request message is not a
    call of it) is left out."""
    kept = []
    for shape in shapes:
        method = schema.method(shape.exemplar.path) if schema is not None and shape.grpc else None
        if method is not None and method.client_streaming:
            continue
        shape.grpc_input = method.input if method is not None else None
        kept.append(shape)
    return kept


def grpc_schema(job: FuzzJob, note: Callable[[str], None]) -> ProtoSchema | None:
    """The schema given, or the baseline's by reflection (or None, with a note: shapes by wire format then)."""
    if job.schema is not None or not job.reflection:
        return job.schema
    baseline = job.targets.baseline
    try:
        return reflect_schema(baseline.base_url, ca_file=job.tls.ca_file, insecure=job.tls.insecure)
    except ReflectionUnavailable as exc:
        note(f"schema: {exc}; gRPC requests are generated from the recorded messages' wire shape")
        return None


def run_fuzz(job: FuzzJob, progress: Progress, note: Callable[[str], None] = lambda _: None) -> SessionResult:
    shapes = endpoint_shapes(job)
    if any(shape.grpc for shape in shapes):
        job = replace(job, schema=grpc_schema(job, note))
        shapes = with_schema(shapes, job.schema)
    mutates = any(shape.method in MUTATING_METHODS for shape in shapes)
    check_write_safety(list(job.targets), set(job.allowed_hosts), corpus_mutates=mutates)
    if job.save_failures is not None:
        check_regression_corpus(job.save_failures)
    with Sender(job.targets, timeouts=job.timeouts, credentials=job.credentials, tls=job.tls) as sender:
        sender.check_reachable()
        sender.log_in()
        result = FuzzSession(shapes, sender, NoiseJudge(job.rules, job.schema), job.options, progress).run()
    result.schema = job.schema
    if job.save_failures is not None and result.failures:
        append_failures(job.save_failures, result.failures)
    return result
