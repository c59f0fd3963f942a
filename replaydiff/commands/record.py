"""`replaydiff record`: put a recording proxy in front of a service (or use it as a forward proxy)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from replaydiff.recorder.capture import DEFAULT_MAX_BODY
from replaydiff.recorder.proxy import DEFAULT_CONFDIR, ProxyError, ProxySettings, parse_listen, parse_upstream, run
from replaydiff.recorder.retries import DEFAULT_RETRY_WINDOW_S
from replaydiff.recorder.sessions import DEFAULT_SESSION_GAP_S, SESSION_BY_CHOICES, SessionBy
from replaydiff.commands.schema import SchemaFiles, schema_options
from replaydiff.errors import EXIT_USAGE, UserError

SANITIZING_USE = "messages are sanitized by field name, as JSON members are (without a schema, by pattern on their string fields)."


@dataclass(frozen=True, slots=True)
class Sanitizing:
    """What the sanitization options asked for, handed to a command as one value."""

    policy: Path | None
    defaults: bool
    pseudonym_key_file: Path | None
    retry_window_s: float


def sanitize_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options every command that writes captured traffic takes (`record`, `import`), passed as `sanitizing`."""

    @functools.wraps(command)
    def with_sanitizing(
        *args: Any,
        policy: Path | None,
        no_default_sanitize: bool,
        pseudonym_key_file: Path | None,
        retry_window: float,
        **kwargs: Any,
    ) -> None:
        sanitizing = Sanitizing(policy, not no_default_sanitize, pseudonym_key_file, retry_window)
        command(*args, sanitizing=sanitizing, **kwargs)

    options = [
        click.option(
            "--policy",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Sanitization policy (TOML); its rules run before the built-in safe defaults.",
        ),
        click.option(
            "--no-default-sanitize",
            "no_default_sanitize",
            is_flag=True,
            help="Turn the built-in safe defaults off: only --policy rules run (none without it).",
        ),
        click.option(
            "--pseudonym-key-file",
            type=click.Path(path_type=Path, dir_okay=False),
            help="HMAC key for pseudonymize rules; default $REPLAYDIFF_PSEUDONYM_KEY, else random for this corpus.",
        ),
        click.option(
            "--retry-window",
            type=click.FloatRange(min=0),
            default=DEFAULT_RETRY_WINDOW_S,
            show_default=True,
            help="Seconds after a failed request in which a repeat of it is tagged as a retry; 0 turns this off.",
        ),
    ]
    decorated: Callable[..., None] = with_sanitizing
    for option in reversed(options):
        decorated = option(decorated)
    return decorated




@dataclass(frozen=True, slots=True)
class Sessions:
    """How captured exchanges are grouped into sessions (`--session-by`, `--session-gap`)."""

    by: SessionBy = "client"
    gap_s: float = DEFAULT_SESSION_GAP_S


def session_options(command: Callable[..., None]) -> Callable[..., None]:
    """The session grouping options of every command that writes captured traffic, passed as `sessions`."""

    @functools.wraps(command)
    def with_sessions(*args: Any, session_by: SessionBy, session_gap: float, **kwargs: Any) -> None:
        command(*args, sessions=Sessions(session_by, session_gap), **kwargs)

    by = click.option(
        "--session-by",
        type=click.Choice(SESSION_BY_CHOICES),
        default="client",
        show_default=True,
        help="client: a session is one client (its credentials or session cookie, pseudonymized, else its address "
        "and User-Agent), whatever its connections; connection: one session per connection.",
    )
    gap = click.option(
        "--session-gap",
        type=click.FloatRange(min=0, min_open=True),
        default=DEFAULT_SESSION_GAP_S,
        show_default=True,
        metavar="SECONDS",
        help="A client quiet for longer than this starts a new session.",
    )
    return by(gap(with_sessions))


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
@click.option(
    "--max-body",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_BODY,
    show_default=True,
    help="Bodies longer than this many bytes are stored cut to it, and the exchange tagged `truncated`.",
)
@click.option(
    "--inject-traceparent",
    is_flag=True,
    help="Give each request without a W3C traceparent one before it reaches the service, so the dependency calls "
    "a `replaydiff tap` logs meanwhile join their exchange exactly (the tap's log can then mock them).",
)
@sanitize_options
@schema_options(SANITIZING_USE)
@session_options
def record(
    upstream: str | None,
    mode: str,
    listen: str,
    output: Path,
    confdir: Path,
    max_body: int,
    inject_traceparent: bool,
    sanitizing: Sanitizing,
    schema_files: SchemaFiles,
    sessions: Sessions,
) -> None:
    """Record HTTP traffic through a proxy into a sanitized corpus, until Ctrl-C or SIGTERM.

    HTTP/1.1 and HTTP/2: over TLS (ALPN), and in cleartext with prior knowledge (h2c, as gRPC services talk),
    recognised by the HTTP/2 connection preface; the proxy then speaks h2c to the upstream too.

    Secrets (credentials, cookies, API-key headers, query and form fields, JSON members and tokens, card numbers
    and emails anywhere) are masked or pseudonymized before anything is written. If the corpus cannot be written
    (full disk), traffic keeps flowing, recording stops with an error, and the exit code is 2.
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
            policy=sanitizing.policy,
            default_sanitize=sanitizing.defaults,
            pseudonym_key_file=sanitizing.pseudonym_key_file,
            proto_descriptor_set=schema_files.descriptor_set,
            protos=schema_files.protos,
            max_body=max_body,
            retry_window_s=sanitizing.retry_window_s,
            session_by=sessions.by,
            session_gap_s=sessions.gap_s,
            inject_traceparent=inject_traceparent,
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
