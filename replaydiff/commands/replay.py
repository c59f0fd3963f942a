"""`replaydiff replay` and `replaydiff run` (replay, then diff)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from replaydiff.replayer.client import Timeouts, TLSOptions
from replaydiff.commands.tlsoptions import CA_CERT, INSECURE
from replaydiff.replayer.correlate import CarryRules, CarryRulesError, load_carry_rules
from replaydiff.replayer.accounts import load_identities
from replaydiff.replayer.credentials import Credentials
from replaydiff.replayer.engine import ReplayOptions
from replaydiff.replayer.plan import Pacing, Selection
from replaydiff.replayer.retry import DEFAULT_RETRY_ON, RetryPolicy
from replaydiff.replayer.targets import Target
from replaydiff.commands.diffing import DiffSettings, diff_options, diff_results
from replaydiff.commands.worker import master_address
from replaydiff.errors import UserError
from replaydiff.mocking import mocked_upstreams, recording_fit
from replaydiff.replaying import LocustEngine, ReplayJob, replay_corpus


def header_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise click.BadParameter(f"{text!r} is not 'Name: value'")
    return name.strip(), value.strip()


def credential_options() -> list[Callable[..., Any]]:
    """How a replay authenticates (README "Replaying authenticated traffic"); `replay`, `run` and `fuzz` share them.
    None of these values is written to a results file or a report."""
    return [
        click.option("--header", "headers", multiple=True, metavar="'NAME: VALUE'",
                     help="A header for every target, replacing the recorded header of that name, e.g. "
                          "'Authorization: Bearer …' (repeatable)."),
        click.option("--identities", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
                     help="TOML [[account]] tables of test accounts: each recorded principal (Authorization, "
                          "session cookie, API key) is sent as one of them, round-robin; an account may log in."),
        click.option("--jwt-key", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
                     help="Re-sign recorded JWTs with this key the sandbox trusts (an HS256 secret, or an RSA/EC "
                          "private key in PEM): same claims, fresh iat and exp."),
    ]  # fmt: skip


def load_credentials(identities: Path | None, jwt_key: Path | None) -> Credentials | None:
    """The credentials `--identities` and `--jwt-key` describe; bad files are one-line errors (exit 2)."""
    if identities is None and jwt_key is None:
        return None
    from replaydiff.replayer.jwtsign import JwtSigner  # PyJWT and cryptography: only when a key is given

    return Credentials(
        load_identities(identities) if identities else None, JwtSigner.from_file(jwt_key) if jwt_key else None
    )


def replay_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by `replay` and `run`, declared once."""
    decorators = [
        click.argument("corpus", type=click.Path(path_type=Path)),
        click.option("--baseline", required=True, metavar="URL", help="The version in production today."),
        click.option("--candidate", required=True, metavar="URL", help="The change under test (e.g. a sandbox)."),
        click.option(
            "--baseline2",
            metavar="URL",
            help="A second baseline for learning noise; defaults to the baseline URL again.",
        ),
        click.option(
            "-o", "--output", type=click.Path(path_type=Path), help="Results file [default: CORPUS-NAME.results.jsonl.zst]."
        ),
        click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
                     help="Open loop on the recorded timing, scaled: 2 replays twice as fast."),
        click.option("--rate", type=click.FloatRange(min=0, min_open=True), metavar="R",
                     help="Open loop at R requests per second, in recorded order."),
        click.option("--concurrency", type=click.IntRange(min=1), metavar="N",
                     help="Closed loop: N requests in flight, each sent as soon as a slot is free."),
        click.option("--limit", type=click.IntRange(min=1), metavar="N", help="Replay at most N exchanges."),
        click.option("--filter", "filters", multiple=True, metavar="PATTERN",
                     help="Replay only matching exchanges: a method (POST), a path glob ('/api/*') or an "
                          "endpoint ('GET /api/products/{id}'); repeatable, any match selects."),
        click.option("--weighted", is_flag=True,
                     help="Replay an exchange with a weight (from `corpus dedup`) as many times as its weight."),
        click.option("--loop", "loops", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
                     help="Replay the corpus N times."),
        click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                     help="Repeat the corpus until this much replay time is planned."),
        *credential_options(),
        click.option("--baseline-header", "baseline_headers", multiple=True, metavar="'NAME: VALUE'",
                     help="Extra header for both baselines (repeatable)."),
        click.option("--candidate-header", "candidate_headers", multiple=True, metavar="'NAME: VALUE'",
                     help="Extra header for the candidate, e.g. a sandbox routing key (repeatable)."),
        click.option("--routing-key", metavar="KEY",
                     help="Route the candidate's requests to a request-isolated sandbox: sets the OpenTelemetry "
                          "'baggage' and 'tracestate' headers to sd-routing-key=KEY."),
        click.option("--host-header", metavar="HOST",
                     help="Send this Host header to every target instead of the recorded one."),
        CA_CERT,
        INSECURE,
        click.option("--retries", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Client retries per request (every attempt is recorded)."),
        click.option("--retry-on", default=",".join(sorted(DEFAULT_RETRY_ON)), show_default=True,
                     help="Statuses and error kinds (timeout, reset, refused, protocol) that are retried."),
        click.option("--upstream-log", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
                     help="The log of a running `replaydiff tap`: its calls are attached to the results by "
                          "traceparent."),
        click.option("--trace-salt", default="", metavar="TEXT",
                     help="Mixed into every trace id: the same salt repeats a run's trace ids (and a tap's seeded "
                          "faults); a new one, e.g. the date, makes them unique in the targets' logs."),
        click.option("--engine", type=click.Choice(["asyncio", "locust"]), default="asyncio", show_default=True,
                     help="asyncio: this process; locust: locust's master and worker processes, for load beyond "
                          "one process or machine."),
        click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
                     help="With --engine asyncio: spread the sessions over N replay processes, one per core at "
                          "most, for more requests per second than one process sends."),
        click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True,
                     help="With --engine locust: local worker processes."),
        click.option("--remote-workers", type=click.IntRange(min=0), default=0, show_default=True,
                     help="With --engine locust: workers joining from other machines (`replaydiff worker`)."),
        click.option("--master-bind", metavar="HOST:PORT",
                     help="With --engine locust: where the master listens for workers [default: 127.0.0.1, "
                          "a free port]."),
        click.option("--correlation-rules", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
                     help="TOML [[carry]] tables (json = \"$.path\" or header = \"Name\") naming response values to "
                          "carry into later requests even when they do not look like ids."),
        click.option("--no-correlate", is_flag=True,
                     help="Send recorded ids as they are, instead of the ids each target returned earlier "
                          "in the session."),
        click.option("--allow-host", "allowed_hosts", multiple=True, metavar="HOST",
                     help="A non-loopback host that may receive POST/PUT/PATCH/DELETE (repeatable)."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
                     help="Seconds to wait for a whole answer, headers and body, from when the request left."),
        click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), default=5.0,
                     show_default=True, help="Seconds to wait for a connection."),
        click.option("--http1", is_flag=True,
                     help="Send every exchange in HTTP/1.1, also those recorded in HTTP/2 (for targets that speak "
                          "only HTTP/1.1; gRPC needs HTTP/2)."),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


def build_job(corpus: Path, baseline: str, candidate: str, baseline2: str | None, output: Path | None, speed: float,
         rate: float | None, concurrency: int | None, limit: int | None, filters: tuple[str, ...], loops: int,
         duration: float | None, baseline_headers: tuple[str, ...], candidate_headers: tuple[str, ...],
         headers: tuple[str, ...], identities: Path | None, jwt_key: Path | None,
         routing_key: str | None, host_header: str | None, ca_cert: str | None, insecure: bool, retries: int,
         retry_on: str, upstream_log: Path | None, trace_salt: str, engine: str, processes: int, workers: int,
         remote_workers: int, master_bind: str | None, correlation_rules: Path | None, no_correlate: bool,
         allowed_hosts: tuple[str, ...],
         timeout: float, connect_timeout: float, weighted: bool = False, http1: bool = False) -> ReplayJob:
    """The job the `replay` options describe; nightly suites build theirs from the same options."""
    if rate is not None and concurrency is not None:
        raise click.UsageError("--rate (open loop) and --concurrency (closed loop) exclude each other")
    common = ([("Host", host_header)] if host_header else []) + [header_pair(h) for h in headers]
    own_base = [header_pair(h) for h in baseline_headers]
    own_cand = [header_pair(h) for h in candidate_headers] + (routing_headers(routing_key) if routing_key else [])
    base_headers, cand_headers = _over(common, own_base), _over(common, own_cand)
    targets = [
        Target.parse("baseline", baseline, base_headers),
        Target.parse("baseline2", baseline2 or baseline, base_headers),
        Target.parse("candidate", candidate, cand_headers),
    ]
    try:
        retry = RetryPolicy(retries=retries, retry_on=RetryPolicy.parse_retry_on(retry_on))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--retry-on") from exc
    return ReplayJob(
        corpus=corpus,
        targets=targets,
        output=output or Path(corpus.name.removesuffix(".zst").removesuffix(".jsonl") + ".results.jsonl.zst"),
        pacing=Pacing(speed=speed, rate=rate),
        selection=Selection(filters=filters, limit=limit, loops=loops, duration_s=duration, weighted=weighted),
        options=ReplayOptions(
            concurrency=concurrency,
            timeouts=Timeouts(connect_s=connect_timeout, read_s=timeout),
            tls=TLSOptions(ca_file=ca_cert, insecure=insecure),
            retry=retry,
            correlate=not no_correlate,
            carry=_carry_rules(correlation_rules),
            credentials=load_credentials(identities, jwt_key),
            trace_salt=trace_salt,
            http2=not http1,
        ),
        allowed_hosts=frozenset(allowed_hosts),
        upstream_log=upstream_log,
        engine=_locust_engine(workers, remote_workers, master_bind) if engine == "locust" else None,
        processes=processes,
    )


def _over(common: list[tuple[str, str]], own: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A target's own headers win over same-named ones meant for every target (`--header`)."""
    names = {name.lower() for name, _ in own}
    return [pair for pair in common if pair[0].lower() not in names] + own


def _carry_rules(path: Path | None) -> CarryRules:
    try:
        return load_carry_rules(path) if path else CarryRules()
    except CarryRulesError as exc:
        raise UserError(str(exc)) from None


def _locust_engine(workers: int, remote_workers: int, master_bind: str | None) -> LocustEngine:
    if not master_bind:
        return LocustEngine(workers, remote_workers)
    host, port = master_address(master_bind, option="--master-bind", example="0.0.0.0:5557")
    return LocustEngine(workers, remote_workers, host, port)


def routing_headers(key: str) -> list[tuple[str, str]]:
    """What request-isolated sandboxes (e.g. Signadot) route on, propagated by OpenTelemetry."""
    return [("baggage", f"sd-routing-key={key}"), ("tracestate", f"sd-routing-key={key}")]


@click.command()
@replay_options
def replay(**params: Any) -> None:
    """Send every request of CORPUS to the baseline, a second baseline and the candidate at once."""
    replay_corpus(build_job(**params), console=Console(stderr=True))


@click.command()
@replay_options
@diff_options(default_confirm=3, default_reflection=True)
@click.option("--mock-upstreams", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Start a mock of the targets' dependencies for the run, answering from this recorded upstream "
                   "log (a `replaydiff tap -o` of the recording); the targets must call the --route ports.")
@click.option("--route", "routes", multiple=True, metavar="NAME=@PORT",
              help="With --mock-upstreams: a dependency the targets call at 127.0.0.1:PORT (repeatable); "
                   "NAME=URL@PORT also names the real one, for --on-miss forward.")
@click.option("--on-miss", type=click.Choice(["502", "forward"]), default="502", show_default=True,
              help="With --mock-upstreams: what a call nothing recorded gets: 502, or the real dependency's answer.")
def run(diff_settings: DiffSettings, mock_upstreams: Path | None, routes: tuple[str, ...], on_miss: str,
        **params: Any) -> None:
    """Replay CORPUS, then diff the results: exit 0 same, 1 divergent, 3 inconclusive (could not test)."""
    job = build_job(**params)
    job = replace(job, endpoints=diff_settings.options.rules.patterns)  # stamped as the report will name them
    diff_settings = replace(diff_settings, tls=job.options.tls)  # reflection and resends trust as the replay does
    console = Console(stderr=True)
    if mock_upstreams is None:
        if routes:
            raise UserError("--route is for --mock-upstreams; without it the targets call their real dependencies")
        replay_corpus(job, console=console)
    else:
        _replay_with_mock(job, mock_upstreams, routes, on_miss, params["trace_salt"], console)
    raise SystemExit(diff_results(job.output, console=Console(), settings=diff_settings, targets=job.targets))


def _replay_with_mock(
    job: ReplayJob, recording: Path, routes: tuple[str, ...], on_miss: str, trace_salt: str, console: Console
) -> None:
    if job.upstream_log is not None:
        raise UserError("--mock-upstreams writes its own upstream log; leave --upstream-log out")
    if not recording.is_file():
        raise UserError(f"--mock-upstreams {recording}: no such file; give the upstream log a recording tap wrote")
    found, total = recording_fit(job.corpus, recording, trace_salt=trace_salt)
    with mocked_upstreams(recording, routes, on_miss=on_miss, corpus=job.corpus) as (log, announced):
        console.print(
            f"mock: {announced.removeprefix('replaydiff: ')}; the recording has calls of {found} of {total} "
            "exchanges", soft_wrap=True,
        )  # fmt: skip
        replay_corpus(replace(job, upstream_log=log), console=console)
