"""Run mitmproxy in-process with the recorder: a reverse proxy in front of one service, or a forward proxy.

mitmproxy keeps its CA and certificates in a `confdir`. We always give it one
of our own (default `.replaydiff/mitmproxy` under the current directory), so
recording never reads or writes the user's `~/.mitmproxy`.
"""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mitmproxy import ctx, exceptions
from mitmproxy.options import Options
from mitmproxy.tools.dump import DumpMaster

from replaydiff.recorder.addon import Recorder
from replaydiff.recorder.capture import DEFAULT_MAX_BODY
from replaydiff.recorder.h2c import H2cPriorKnowledge
from replaydiff.recorder.retries import DEFAULT_RETRY_WINDOW_S
from replaydiff.recorder.sessions import DEFAULT_SESSION_GAP_S, SessionBy

DEFAULT_LISTEN = ("127.0.0.1", 8080)
DEFAULT_CONFDIR = Path(".replaydiff/mitmproxy")


class ProxyError(Exception):
    """The proxy cannot start with these settings; the message says which one and what to do."""


@dataclass(frozen=True, slots=True)
class ProxySettings:
    output: Path
    upstream: str | None
    """`scheme://host[:port]` for a reverse proxy; None for a forward proxy."""
    listen_host: str = DEFAULT_LISTEN[0]
    listen_port: int = DEFAULT_LISTEN[1]
    """0 picks a free port; `on_listening` receives the real one."""
    confdir: Path = DEFAULT_CONFDIR
    source: str = "replaydiff record"
    policy: Path | None = None
    default_sanitize: bool = True
    pseudonym_key_file: Path | None = None
    proto_descriptor_set: Path | None = None
    protos: tuple[Path, ...] = ()
    max_body: int = DEFAULT_MAX_BODY
    retry_window_s: float = DEFAULT_RETRY_WINDOW_S
    session_by: SessionBy = "client"
    session_gap_s: float = DEFAULT_SESSION_GAP_S
    inject_traceparent: bool = False

    @property
    def mode(self) -> str:
        return f"reverse:{self.upstream}" if self.upstream else "regular"


def parse_upstream(url: str) -> str:
    """`http[s]://host[:port]`, normalised; anything mitmproxy's reverse mode cannot honour is refused."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ProxyError(f"upstream {url!r} is not a valid URL ({exc}); use http://host:port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProxyError(f"upstream {url!r} must look like http://host:port or https://host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ProxyError(f"upstream {url!r} must be only scheme, host and port (no path, query or user)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def parse_listen(text: str) -> tuple[str, int]:
    """`[HOST:]PORT`; HOST defaults to 127.0.0.1 so a recorder is never reachable from outside by accident."""
    host, colon, port_text = text.strip().rpartition(":")
    if not colon:
        host = DEFAULT_LISTEN[0]
    host = host.strip("[]") or DEFAULT_LISTEN[0]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ProxyError(
            f"listen address {text!r} needs a port from 0 to 65535, e.g. 127.0.0.1:8080 or 0 for any free port"
        )
    return host, int(port_text)


def check_listen_address(host: str, port: int) -> None:
    """Binds and releases the address, so a taken port is one clear error instead of a mitmproxy startup log."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ProxyError(f"cannot listen on {host}: {exc.strerror}; use an IP address such as 127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ProxyError(
                    f"port {port} on {host} is already in use; choose another with --listen, or 0 for any free port"
                ) from None
            raise ProxyError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def run(settings: ProxySettings, *, on_listening: Callable[[str], None]) -> Recorder:
    """Records until SIGINT or SIGTERM; the corpus is closed by then. A write failure stops recording, not the
    proxy: the caller finds it in `Recorder.failure`."""
    check_listen_address(settings.listen_host, settings.listen_port)
    try:
        settings.confdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProxyError(
            f"cannot create the mitmproxy confdir {settings.confdir} ({exc.strerror}); choose another with --confdir"
        ) from None
    return asyncio.run(_serve(settings, on_listening))


async def _serve(settings: ProxySettings, on_listening: Callable[[str], None]) -> Recorder:
    recorder = Recorder(on_recording=lambda: on_listening(_listening_url()))
    await serve_master(
        [recorder],
        confdir=str(settings.confdir),
        mode=[settings.mode],
        listen_host=settings.listen_host,
        listen_port=settings.listen_port,
        replaydiff_output=str(settings.output),
        replaydiff_source=settings.source,
        replaydiff_policy=str(settings.policy) if settings.policy else None,
        replaydiff_default_sanitize=settings.default_sanitize,
        replaydiff_pseudonym_key_file=str(settings.pseudonym_key_file) if settings.pseudonym_key_file else None,
        replaydiff_proto_descriptor_set=str(settings.proto_descriptor_set) if settings.proto_descriptor_set else None,
        replaydiff_proto=[str(path) for path in settings.protos],
        replaydiff_max_body=settings.max_body,
        replaydiff_retry_window=settings.retry_window_s,
        replaydiff_session_by=settings.session_by,
        replaydiff_session_gap=settings.session_gap_s,
        replaydiff_inject_traceparent=settings.inject_traceparent,
    )
    return recorder


async def serve_master(addons: list[object], **options: object) -> None:
    """Runs mitmproxy with our addons until SIGINT or SIGTERM; shared by the recorder and the tap."""
    master = DumpMaster(Options(), with_termlog=False, with_dumper=False)
    # Startup errors (e.g. a port taken since we checked) end the process; say why rather than just "exiting".
    master.addons.get("errorcheck").repeat_errors_on_stderr = True
    # after mitmproxy's own addons: H2cPriorKnowledge corrects their next-layer choice for cleartext HTTP/2
    master.addons.add(*addons, H2cPriorKnowledge())
    try:
        # Read each request before connecting upstream: with mitmproxy's default (eager), a request to a
        # service that is down is dropped unseen; lazily, it is recorded as an error and the client gets a 502.
        master.options.update(connection_strategy="lazy", **options)
    except exceptions.OptionsError as exc:
        raise ProxyError(str(exc)) from None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, master.shutdown)
    await master.run()


def _listening_url() -> str:
    """The address mitmproxy really listens on: the port may have been 0."""
    host, port, *_ = ctx.master.addons.get("proxyserver").listen_addrs()[0]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
