"""`replaydiff diff RESULTS`: the verdict on a replay, as text, JSON, JUnit XML, HTML and an exit code.

`diff_options` declares every option of the differ once; `diff`, `demo` and
`run` share it, and the command receives one `DiffSettings` instead of a
dozen keywords.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from replaydiff.corpora import DIVERGENCE_KINDS, ResultsReader
from replaydiff.corpora.protobuf import ProtoSchema, ReflectionUnavailable, reflect_schema
from replaydiff.diff import (
    DiffOptions,
    DiffReport,
    LatencyThresholds,
    NoiseThresholds,
    Rules,
    RulesError,
    analyze_results,
    load_openapi,
    load_rules,
    render_html,
    render_junit,
    render_text,
)
from replaydiff.confirming import confirm, worth_resending
from replaydiff.diff.findings import INCONCLUSIVE
from replaydiff.commands.schema import SchemaFiles, schema_file_options
from replaydiff.errors import EXIT_DIVERGENT, EXIT_INCONCLUSIVE, EXIT_SAME, UserError
from replaydiff.fuzz.sender import FuzzTargets
from replaydiff.commands.tlsoptions import tls_options
from replaydiff.replayer.targets import ReplayError, Target
from replaydiff.replayer.client import TLSOptions

_NOISE = NoiseThresholds()
_LATENCY = LatencyThresholds()
FAIL_ON_WORDS: tuple[str, ...] = (*DIVERGENCE_KINDS, INCONCLUSIVE)
"""The divergence kinds, and `inconclusive`: endpoints the baselines could not reproduce from the recording
(exit 3)."""


@dataclass(frozen=True)
class DiffSettings:
    options: DiffOptions = field(default_factory=DiffOptions)
    json_out: Path | None = None
    junit_out: Path | None = None
    html_out: Path | None = None
    fail_on: frozenset[str] | None = None
    """Kinds that fail the run; `None`: every kind."""
    verbose: bool = False
    """Print every divergence and every endpoint's latency, not one screen."""
    confirm: int = 0
    """Resend the idempotent requests behind rare divergences this many times (`replaydiff.confirming`); 0: never."""
    reflection: bool = False
    """Without a schema given, fetch one by gRPC server reflection from the baseline when the results hold gRPC."""
    tls: TLSOptions = TLSOptions()
    """How https targets are trusted when the diff talks to them: reflection and confirmation resends."""


def diff_results(
    path: Path | str,
    *,
    console: Console,
    settings: DiffSettings = DiffSettings(),
    targets: Sequence[Target] | None = None,
) -> int:
    """Diff a results file, print and write the reports; the exit code says whether the run failed."""
    return exit_code(report_results(path, console=console, settings=settings, targets=targets), settings)


def exit_code(report: DiffReport, settings: DiffSettings) -> int:
    """1 for failing divergences; else 3 when some endpoint was not tested (unless `--fail-on` leaves
    `inconclusive` out); else 0."""
    if report.failing(settings.fail_on):
        return EXIT_DIVERGENT
    return EXIT_INCONCLUSIVE if report.inconclusive_fails(settings.fail_on) else EXIT_SAME


def report_results(
    path: Path | str,
    *,
    console: Console,
    settings: DiffSettings = DiffSettings(),
    targets: Sequence[Target] | None = None,
) -> DiffReport:
    """Diff a results file, print the report and write the files asked for.

    A file with nothing to compare is an input error rather than `SAME`: a
    replay that reached no target must not pass a CI gate. `targets` (with
    their per-target headers) receive the confirmation resends; by default
    the URLs the results file names.
    """
    schema_source = (lambda targets: _reflected(targets, console, settings.tls)) if settings.reflection else None
    report = analyze_results(path, options=settings.options, schema_source=schema_source)
    if report.options.schema is not None:
        console.print(f"gRPC messages decoded by schema: {report.options.schema.source}", soft_wrap=True)
    if not report.totals.compared:
        raise UserError(
            f"{path}: nothing to compare: no exchange has both a baseline and a candidate record "
            f"({report.totals.exchanges} exchanges read); replay the corpus against both targets"
        )
    if settings.confirm:
        report = _confirmed(report, Path(path), settings, targets)
    render_text(report, console, verbose=settings.verbose)
    if settings.fail_on is not None and (passing := len(report.divergences) - len(report.failing(settings.fail_on))):
        console.print(f"--fail-on {','.join(sorted(settings.fail_on))}: {passing} of the divergences do not fail the run")
    fail_on = settings.fail_on
    outputs: list[tuple[Path | None, str, Callable[[], str]]] = [
        (settings.json_out, "JSON", lambda: json.dumps(report.to_json(fail_on=fail_on), indent=2, ensure_ascii=False) + "\n"),
        (settings.junit_out, "JUnit XML", lambda: render_junit(report, fail_on=fail_on)),
        (settings.html_out, "HTML", lambda: render_html(report, fail_on=fail_on)),
    ]  # fmt: skip
    for out, what, render in outputs:
        if out is not None:
            _write(out, what, render())
    return report


def _reflected(targets: Mapping[str, str], console: Console, tls: TLSOptions) -> ProtoSchema | None:
    """The baseline's schema by server reflection, or None with a one-line note: messages are then read by wire
    format, which still finds every difference, by field number."""
    url = targets.get("baseline")
    if not url:
        console.print("schema: the results name no baseline URL to ask by reflection; gRPC messages are compared "
                      "by wire format", soft_wrap=True)  # fmt: skip
        return None
    try:
        return reflect_schema(url, ca_file=tls.ca_file, insecure=tls.insecure)
    except ReflectionUnavailable as exc:
        console.print(f"schema: {exc}; gRPC messages are compared by wire format (give --proto-descriptor-set or "
                      "--proto for field names)", soft_wrap=True)  # fmt: skip
        return None


def _confirmed(report: DiffReport, path: Path, settings: DiffSettings, targets: Sequence[Target] | None) -> DiffReport:
    """Confirmation needs the recorded requests (the corpus the results header names) and the three targets,
    but only when some divergence is worth resending."""
    if not any(worth_resending(group) for group in report.divergences):
        return replace(report, confirm_times=settings.confirm)
    header = ResultsReader(path).header
    corpus = Path(header.get("corpus") or "")
    if not corpus.is_file():
        raise UserError(f"{path}: --confirm needs the replayed corpus, but {str(corpus) or 'none'!r} is not a file; "
                        "run from the directory the replay ran in, or use --confirm 0")  # fmt: skip
    urls = header.get("targets") or {}
    try:
        chosen = FuzzTargets(*targets) if targets else FuzzTargets.parse(
            urls["baseline"], urls["candidate"], urls.get("baseline2")
        )
    except (KeyError, ReplayError) as exc:
        raise UserError(f"{path}: --confirm needs the baseline and candidate URLs in the results file ({exc})") from None
    return confirm(report, corpus=corpus, targets=chosen, times=settings.confirm, rules=settings.options.rules,
                   tls=settings.tls)


def _write(path: Path, what: str, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot write the {what} report: {exc.strerror}") from exc


def _fail_on(ctx: click.Context, param: click.Parameter, value: str | None) -> frozenset[str] | None:
    if value is None or value.strip() == "all":
        return None
    kinds = frozenset(kind.strip() for kind in value.split(",") if kind.strip())
    if unknown := sorted(kinds - set(FAIL_ON_WORDS)):
        raise click.BadParameter(f"unknown kind {unknown[0]!r}; choose from {','.join(FAIL_ON_WORDS)} or 'all'")
    return kinds


_OUTPUT = click.Path(dir_okay=False, path_type=Path)
_INPUT = click.Path(dir_okay=False, path_type=Path)
_PARAMS = ("rules_file", "openapi", "json_out", "junit_out", "html_out", "fail_on", "verbose", "confirm", "relative_noise",
           "absolute_noise", "latency_abs_ms", "latency_rel", "latency_alpha", "latency_tail_quantile",
           "proto_descriptor_set", "protos", "proto_reflection")  # fmt: skip


def diff_options(
    *, default_rules: Path | None = None, default_confirm: int = 0, default_reflection: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The differ's options, declared once; the command gets them as `diff_settings: DiffSettings`.

    `default_rules`: a rules file used when `--rules` is not given (the demo ships one).
    `default_confirm`: resends per rare divergence when `--confirm` is not given (`run`: 3).
    `default_reflection`: ask the baseline for its gRPC schema when none is given (`run`, whose baseline has just
    answered; `diff` reads results whose baseline may be gone, so there it is asked for).
    """
    decorators = [
        click.option("--rules", "rules_file", type=_INPUT, metavar="FILE",
                     help="TOML rules: headers and JSON paths to ignore or normalize, endpoint patterns."
                     + (f"  [default: {default_rules.name}]" if default_rules else "")),
        click.option("--openapi", type=_INPUT, metavar="FILE",
                     help="OpenAPI document (JSON or YAML) whose paths name the endpoints."),
        click.option("--json", "json_out", type=_OUTPUT, metavar="FILE", help="Also write the report as JSON."),
        click.option("--junit", "junit_out", type=_OUTPUT, metavar="FILE",
                     help="Also write JUnit XML: one test case per endpoint."),
        click.option("--html", "html_out", type=_OUTPUT, metavar="FILE",
                     help="Also write a self-contained HTML report with latency plots."),
        click.option("-v", "--verbose", is_flag=True,
                     help="Print every divergence with an example and every endpoint's latency, not one screen."),
        click.option("--confirm", type=click.IntRange(min=0), default=default_confirm, show_default=True,
                     metavar="N",
                     help="Resend the GET/HEAD/OPTIONS requests behind divergences seen on few exchanges N times "
                          "to every target: noise leaves the report, a difference the candidate does not repeat "
                          "is flaky and does not fail the run; 0: no resends."),
        click.option("--fail-on", callback=_fail_on, metavar="KINDS",
                     help=f"Comma list of kinds that fail the run ({','.join(FAIL_ON_WORDS)}). [default: all]"),
        click.option("--relative-noise", type=click.FloatRange(0, 1, max_open=True), default=_NOISE.relative,
                     show_default=True, help="Report a location only if (raw − noise) / (raw + noise) exceeds this."),
        click.option("--absolute-noise", type=click.FloatRange(0, 1, max_open=True), default=_NOISE.absolute,
                     show_default=True,
                     help="Report a location only if (raw − noise) / exchanges of its endpoint exceeds this."),
        click.option("--latency-abs-ms", type=click.FloatRange(min=0), default=_LATENCY.absolute_ms,
                     show_default=True, help="A latency regression must be at least this many ms."),
        click.option("--latency-rel", type=click.FloatRange(min=0), default=_LATENCY.relative, show_default=True,
                     help="… and at least this fraction of the baseline's p50 (or of its tail quantile)."),
        click.option("--latency-alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True),
                     default=_LATENCY.alpha, show_default=True, help="Significance level of the latency tests."),
        click.option("--latency-tail-quantile", type=click.FloatRange(0.5, 1, min_open=True, max_open=True),
                     default=_LATENCY.tail_quantile, show_default=True,
                     help="The tail tested for a regression the median does not show."),
        *schema_file_options("messages are compared by proto field name (without a schema, by wire format: "
                             "field numbers)."),
        click.option("--proto-reflection/--no-proto-reflection", default=None,
                     help="Without a schema given, ask the baseline for it by gRPC server reflection when the "
                          "results hold gRPC calls; a baseline without reflection leaves them decoded by wire "
                          "format (field numbers)." + ("  [default: on]" if default_reflection else "  [default: off]")),
    ]  # fmt: skip

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def with_settings(*args: Any, **params: Any) -> Any:
            given = {name: params.pop(name) for name in _PARAMS}
            if given["proto_reflection"] is None:
                given["proto_reflection"] = default_reflection
            return command(*args, diff_settings=_settings(default_rules=default_rules, **given), **params)

        for decorator in reversed(decorators):
            with_settings = decorator(with_settings)
        return with_settings

    return decorate


def _settings(
    *,
    default_rules: Path | None,
    rules_file: Path | None,
    openapi: Path | None,
    json_out: Path | None,
    junit_out: Path | None,
    html_out: Path | None,
    fail_on: frozenset[str] | None,
    verbose: bool,
    confirm: int,
    relative_noise: float,
    absolute_noise: float,
    latency_abs_ms: float,
    latency_rel: float,
    latency_alpha: float,
    latency_tail_quantile: float,
    proto_descriptor_set: Path | None = None,
    protos: tuple[Path, ...] = (),
    proto_reflection: bool = False,
) -> DiffSettings:
    """Loads the rules, OpenAPI and schema files: a bad one is a one-line usage error (exit 2) naming the file."""
    try:
        rules = load_rules(path) if (path := rules_file or default_rules) else Rules()
        if openapi is not None:
            rules = rules.with_patterns(load_openapi(openapi))
    except RulesError as exc:
        raise UserError(str(exc)) from None
    schema = SchemaFiles(proto_descriptor_set, protos).load()
    options = DiffOptions(
        noise=NoiseThresholds(relative=relative_noise, absolute=absolute_noise),
        latency=LatencyThresholds(
            absolute_ms=latency_abs_ms, relative=latency_rel, alpha=latency_alpha, tail_quantile=latency_tail_quantile
        ),
        rules=rules,
        schema=schema,
    )
    reflection = proto_reflection and schema is None
    return DiffSettings(options, json_out, junit_out, html_out, fail_on, verbose, confirm, reflection)


@click.command("diff")
@click.argument("results", type=click.Path(path_type=Path))
@diff_options()
@tls_options
@click.pass_context
def diff(ctx: click.Context, results: Path, diff_settings: DiffSettings, ca_cert: str | None, insecure: bool) -> None:
    """Compare baseline and candidate in a RESULTS file; exit 0 same, 1 divergent, 2 bad input, 3 inconclusive.

    Differences that baseline2 shows as often as the candidate (timestamps,
    request ids) are noise and are not reported.
    """
    settings = replace(diff_settings, tls=TLSOptions(ca_file=ca_cert, insecure=insecure))
    ctx.exit(diff_results(results, console=Console(), settings=settings))
