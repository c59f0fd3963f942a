"""`replaydiff fuzz`: hypothesis explores requests like the recorded ones and shrinks what diverges."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any
from pathlib import Path

import click
from hypothesis import configuration
from rich.console import Console

from replaydiff.diff.rules import Rules, RulesError, load_rules
from replaydiff.replayer.client import Timeouts, TLSOptions
from replaydiff.commands.schema import SchemaFiles, schema_options
from replaydiff.commands.tlsoptions import tls_options
from replaydiff.errors import EXIT_DIVERGENT, EXIT_SAME, UserError
from replaydiff.fuzz.live import LiveView
from replaydiff.fuzz.report import print_report
from replaydiff.fuzz.sender import FuzzTargets
from replaydiff.fuzz.session import HYPOTHESIS_HOME, FuzzOptions
from replaydiff.fuzz.workflow import FuzzJob, run_fuzz
from replaydiff.commands.replay import credential_options, header_pair, load_credentials
from replaydiff.replaying import ReplayInterrupted

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h)?$")
_SECONDS = {"s": 1, "m": 60, "h": 3600}


def _credential_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(credential_options()):
        command = decorator(command)
    return command


class Duration(click.ParamType):
    """`90`, `90s`, `5m`, `1.5h`: seconds as a float."""

    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        match = _DURATION.match(str(value).strip())
        if not match or float(match.group(1)) <= 0:
            self.fail(f"{value!r} is not a duration such as 90s, 5m or 1h", param, ctx)
        return float(match.group(1)) * _SECONDS[match.group(2) or "s"]


@contextlib.contextmanager
def _hypothesis_home(path: Path) -> Iterator[None]:
    """Hypothesis's caches go with its database, not to ./.hypothesis; reset after, for callers in-process."""
    configuration.set_hypothesis_home_dir(str(path))
    try:
        yield
    finally:
        configuration.set_hypothesis_home_dir(None)


def _rules(path: Path | None) -> Rules:
    try:
        return load_rules(path) if path else Rules()
    except RulesError as exc:
        raise UserError(str(exc)) from None


@click.command()
@click.argument("corpus", type=click.Path(path_type=Path))
@click.option("--baseline", required=True, metavar="URL", help="The version in production today.")
@click.option("--candidate", required=True, metavar="URL", help="The change under test.")
@click.option("--baseline2", metavar="URL", help="A second baseline for learning noise [default: the baseline again].")
@click.option("--examples", type=click.IntRange(min=1), default=100, show_default=True,
              help="Generated requests per endpoint (shrinking and confirming resends come on top).")
@click.option("--seed", type=int, help="Makes generation reproducible; printed at the end when not given.")
@click.option("--endpoint", "endpoints", multiple=True, metavar="GLOB",
              help="Fuzz only matching endpoints: 'POST /api/cart/*' or a path glob '/api/cart/*' (repeatable).")
@click.option("--time-budget", type=Duration(), default="5m", show_default=True,
              help="Stop starting new rounds after this long (90s, 5m, 1h).")
@click.option("--save-failures", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Append each shrunk divergence to this corpus, for `replaydiff replay` and nightly runs.")
@click.option("--allow-host", "allowed_hosts", multiple=True, metavar="HOST",
              help="A non-loopback host that may receive POST/PUT/PATCH/DELETE (repeatable).")
@click.option("--rules", "rules_file", type=click.Path(path_type=Path, exists=True, dir_okay=False), metavar="FILE",
              help="TOML rules (as for `replaydiff diff`): headers and JSON paths to ignore or normalize.")
@click.option("--database", type=click.Path(path_type=Path, file_okay=False), default=HYPOTHESIS_HOME,
              show_default=True, help="Hypothesis's directory; its example database makes a rerun replay the "
                                      "failures saved here first.")
@click.option("--no-database", is_flag=True, help="Keep no examples between runs.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds to wait for each response.")
@schema_options("requests are generated from each method's input message type.")
@click.option("--proto-reflection/--no-proto-reflection", default=True, show_default=True,
              help="Without a schema given, ask the baseline for it by gRPC server reflection when the corpus holds "
                   "gRPC calls; else requests follow the recorded messages' wire shape.")
@tls_options
@_credential_options
def fuzz(corpus: Path, baseline: str, candidate: str, baseline2: str | None, examples: int, seed: int | None,
         endpoints: tuple[str, ...], time_budget: float, save_failures: Path | None, allowed_hosts: tuple[str, ...],
         rules_file: Path | None, database: Path, no_database: bool, timeout: float, headers: tuple[str, ...],
         schema_files: SchemaFiles, proto_reflection: bool, ca_cert: str | None, insecure: bool,
         identities: Path | None, jwt_key: Path | None) -> None:
    """Generate requests like those in CORPUS, send each to baseline, baseline#2 and candidate; exit 1 on divergence."""
    targets = FuzzTargets.parse(baseline, candidate, baseline2, [header_pair(h) for h in headers])
    job = FuzzJob(
        corpus=corpus,
        targets=targets,
        endpoints=endpoints,
        options=FuzzOptions(examples=examples, seed=seed, time_budget_s=time_budget,
                            database=None if no_database else database / "examples", label=corpus.name),
        rules=_rules(rules_file),
        allowed_hosts=frozenset(allowed_hosts),
        save_failures=save_failures,
        timeouts=Timeouts(connect_s=min(timeout, 5.0), read_s=timeout),
        credentials=load_credentials(identities, jwt_key),
        schema=schema_files.load(),
        reflection=proto_reflection,
        tls=TLSOptions(ca_file=ca_cert, insecure=insecure),
    )
    try:
        with _hypothesis_home(database), LiveView(Console(stderr=True)) as view:
            result = run_fuzz(job, view, note=lambda line: Console(stderr=True).print(line, soft_wrap=True, markup=False))
    except KeyboardInterrupt:
        raise ReplayInterrupted("fuzz session interrupted; divergences saved so far are in the example database") from None
    print_report(result, targets, Console())
    if save_failures is not None and result.failures:
        Console(stderr=True).print(f"appended the divergences to {save_failures}", soft_wrap=True, markup=False)
    raise SystemExit(EXIT_DIVERGENT if result.failures else EXIT_SAME)
