"""`replaydiff tap`: an egress proxy between the service under test and its dependencies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from replaydiff.commands.record import Sanitizing, sanitize_options
from replaydiff.commands.tlsoptions import check_ca_bundle
from replaydiff.recorder.mock_tap import ON_MISS_CHOICES
from replaydiff.recorder.proxy import DEFAULT_CONFDIR, ProxyError
from replaydiff.recorder.tap_proxy import TapSettings, check_routes, parse_route, run_tap
from replaydiff.errors import UserError


@click.command("tap")
@click.option("--route", "routes", multiple=True, metavar="NAME=URL[@PORT]",
              help="A dependency and where it really is; the tap listens for it on PORT (default: a free one). "
                   "Repeatable. Without any, the tap is a forward proxy (set the service's HTTP_PROXY to it). "
                   "With --mock, NAME=@PORT: no real one.")
@click.option("--listen-host", default="127.0.0.1", show_default=True, help="Address the tap listens on.")
@click.option("--port", "forward_port", type=click.IntRange(0, 65535), default=0,
              help="Forward-proxy port (without --route); 0 picks a free one.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Where to write the upstream calls (.jsonl.zst); pass it to `replaydiff replay --upstream-log`.")
@click.option("--faults", type=click.Path(path_type=Path, dir_okay=False),
              help="Seeded fault rules (TOML): status, delay or reset for a fraction of calls.")
@click.option("--seed", type=int, help="Seed of the fault decisions [default: the faults file's, else 0].")
@click.option("--timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds a dependency has for its whole answer, headers and body; a call still unanswered then "
                   "is cut (the service gets 502) and logged as a timeout. 0: no limit.")
@click.option("--confdir", type=click.Path(path_type=Path), default=DEFAULT_CONFDIR, show_default=True,
              help="mitmproxy's own directory; never the user's ~/.mitmproxy.")
@click.option("--mock", type=click.Path(path_type=Path, dir_okay=False), metavar="RECORDED_UPSTREAM.jsonl.zst",
              help="Answer every call from this recorded upstream log (an earlier tap's -o) instead of forwarding.")
@click.option("--on-miss", type=click.Choice(ON_MISS_CHOICES), default="502", show_default=True,
              help="With --mock, a call nothing recorded answers: 502, or forward to the route's real URL.")
@click.option("--mock-rules", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="A diff rules file: the JSON paths its `ignore = true` rules name are ignored when calls are "
                   "matched to the recording (volatile fields such as timestamps).")
@click.option("--mock-corpus", type=click.Path(path_type=Path, dir_okay=False), metavar="CORPUS",
              help="With --mock: the corpus `replaydiff record` wrote along with the recording. A recorded call "
                   "without a trace id that started while exactly one of its exchanges was in flight is then "
                   "matched within that exchange (marked mock_by_time in the log); without it, only across the "
                   "recording.")
@click.option("--outcomes-only", is_flag=True,
              help="Log each call's method, path and outcome only, as a replay's tap needs; by default the log "
                   "holds whole calls (sanitized) and can serve as a mock's recording (--mock).")
@click.option("--ca-cert", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE",
              help="Trust this CA bundle (PEM) for https dependencies, e.g. a private CA's.")
@click.option("--insecure", is_flag=True, help="Do not verify https dependencies' certificates.")
@sanitize_options
def tap(routes: tuple[str, ...], listen_host: str, forward_port: int, output: Path, faults: Path | None,
        seed: int | None, timeout: float, confdir: Path, mock: Path | None, on_miss: str, mock_rules: Path | None,
        mock_corpus: Path | None, outcomes_only: bool, ca_cert: Path | None, insecure: bool,
        sanitizing: Sanitizing) -> None:
    """Record (and fault) the calls a service makes to its dependencies, attributed by `traceparent`; or, with
    --mock, answer them from a recording."""
    try:
        parsed = [parse_route(route) for route in routes]
        check_routes(parsed, mock=mock is not None, on_miss=on_miss)
        if mock is not None and not mock.is_file():
            raise UserError(f"--mock {mock}: no such file; give the upstream log a recording tap wrote (-o)")
        if mock_corpus is not None and (mock is None or not mock_corpus.is_file()):
            why = "no such file; give the corpus `replaydiff record` wrote" if mock else "is for --mock"
            raise UserError(f"--mock-corpus {mock_corpus}: {why}")
        if ca_cert is not None:
            check_ca_bundle(ca_cert)  # mitmproxy would only say so at each https call
        settings = TapSettings(
            output=output,
            routes={name: url for name, url, _ in parsed},
            ports={name: port for name, _, port in parsed if port},
            listen_host=listen_host,
            forward_port=forward_port,
            faults=faults,
            seed=seed,
            timeout_s=timeout,
            confdir=confdir,
            policy=sanitizing.policy,
            default_sanitize=sanitizing.defaults,
            pseudonym_key_file=sanitizing.pseudonym_key_file,
            mock=mock,
            on_miss=on_miss,
            mock_rules=mock_rules,
            mock_corpus=mock_corpus,
            whole_calls=not outcomes_only,
            upstream_ca=ca_cert,
            insecure=insecure,
        )
        result = run_tap(settings, on_listening=_announce(output))
    except ProxyError as exc:  # bad routes, ports, or fault rules (the tap's options reject those)
        raise UserError(str(exc)) from None
    answered = f" (mock: {result.mock.summary() or 'no call'})" if result.mock is not None else ""
    click.echo(f"replaydiff: tap wrote {result.calls} upstream calls to {output}{answered}", err=True)


def _announce(output: Path) -> Callable[[dict[str, str]], None]:
    def announce(addresses: dict[str, str]) -> None:
        listing = ", ".join(f"{name} {address}" for name, address in addresses.items())
        click.echo(f"replaydiff: tap listening: {listing}; writing {output} (Ctrl-C to stop)", err=True)

    return announce
