"""`replaydiff record`: put a recording proxy in front of a service (or use it as a forward proxy)."""

from __future__ import annotations

from pathlib import Path

import click

from recorder.proxy import DEFAULT_CONFDIR, ProxyError, ProxySettings, parse_listen, parse_upstream, run
from replaydiff.errors import EXIT_USAGE, UserError


@click.command("record")
@click.option("--upstream", metavar="URL", help="The service to record, e.g. http://127.0.0.1:8000 (reverse mode).")
@click.option(
    "--mode",
    type=click.Choice(["reverse", "forward"]),
    default="reverse",
    show_default=True,
    help="reverse: clients talk to the proxy as if it were the service; forward: clients use it as their HTTP proxy.",
)
@click.option(
    "--listen",
    metavar="[HOST:]PORT",
    default="127.0.0.1:8080",
    show_default=True,
    help="Where the proxy listens; port 0 picks a free one (the startup line names it).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="The corpus to write (NAME.jsonl.zst); an existing file is replaced.",
)
@click.option(
    "--confdir",
    type=click.Path(path_type=Path),
    default=DEFAULT_CONFDIR,
    show_default=True,
    help="mitmproxy's own directory (CA certificates); never the user's ~/.mitmproxy.",
)
def record(upstream: str | None, mode: str, listen: str, output: Path, confdir: Path) -> None:
    """Record HTTP traffic through a proxy into a sanitized corpus, until Ctrl-C or SIGTERM.

    Secrets (Authorization, cookies, API-key headers and query parameters) are masked before anything is written.
    """
    try:
        target = _upstream_for(mode, upstream)
        host, port = parse_listen(listen)
        settings = ProxySettings(
            output=output,
            upstream=target,
            listen_host=host,
            listen_port=port,
            confdir=confdir,
            source=f"replaydiff record: reverse proxy to {target}" if target else "replaydiff record: forward proxy",
        )
        recorder = run(settings, on_listening=lambda url: _announce(url, settings))
    except ProxyError as exc:
        raise UserError(str(exc)) from None
    if recorder.failure:
        raise click.exceptions.Exit(EXIT_USAGE)  # the recorder has already said why, in one line
    click.echo(f"replaydiff: wrote {recorder.written} exchanges to {output}", err=True)


def _upstream_for(mode: str, upstream: str | None) -> str | None:
    if mode == "forward":
        if upstream:
            raise ProxyError("--upstream is only for --mode reverse; a forward proxy sends each request where it asks")
        return None
    if not upstream:
        raise ProxyError("--upstream URL is required in reverse mode, e.g. --upstream http://127.0.0.1:8000")
    return parse_upstream(upstream)


def _announce(url: str, settings: ProxySettings) -> None:
    """One line other tools parse: the first `http://HOST:PORT` is where to send traffic."""
    target = f" -> {settings.upstream}" if settings.upstream else " (forward proxy)"
    click.echo(f"replaydiff: recording {url}{target}, writing {settings.output} (Ctrl-C to stop)", err=True)
