"""Run the tap in-process: one reverse-proxy listener per dependency, or one forward proxy."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mitmproxy import ctx

from replaydiff.corpora.ports import free_port
from replaydiff.recorder.proxy import DEFAULT_CONFDIR, ProxyError, check_listen_address, parse_upstream, serve_master
from replaydiff.recorder.tap import Tap


@dataclass(frozen=True, slots=True)
class TapSettings:
    output: Path
    routes: dict[str, str] = field(default_factory=dict)
    """Dependency name → upstream URL (reverse mode); empty for a forward proxy."""
    ports: dict[str, int] = field(default_factory=dict)
    """Dependency name → listening port; missing or 0 picks a free one."""
    listen_host: str = "127.0.0.1"
    forward_port: int = 0
    faults: Path | None = None
    seed: int | None = None
    """None: the faults file's seed (else 0)."""
    timeout_s: float = 0.0
    """A dependency's whole answer must come within this (0: no limit); else the call is cut and logged as a timeout."""
    confdir: Path = DEFAULT_CONFDIR
    policy: Path | None = None
    default_sanitize: bool = True
    pseudonym_key_file: Path | None = None
    mock: Path | None = None
    """A recorded upstream log to answer from instead of forwarding (`recorder.mock`)."""
    on_miss: str = "502"
    mock_rules: Path | None = None
    mock_corpus: Path | None = None
    """The corpus recorded with `mock`: its untraced calls are attributed to its exchanges by time."""
    whole_calls: bool = True
    """Log each call's request and answer (sanitized), so the log can be a mock's recording."""
    upstream_ca: Path | None = None
    """Trust only this CA bundle for https dependencies (default: the system's, as certifi has it)."""
    insecure: bool = False
    """Do not verify https dependencies' certificates."""

    def listeners(self) -> list[tuple[str, str]]:
        """(dependency name, mitmproxy mode spec) per listener. One listener binds port 0 itself and reports
        what it got, so no other process can take its port first; mitmproxy cannot give several listeners
        port 0, so for several, free ports are picked here, once."""
        if not self.routes:
            return [("forward proxy", f"regular@{self.forward_port}")]
        if len(self.routes) == 1:
            [(name, url)] = self.routes.items()
            return [(name, f"reverse:{url or _NOWHERE}@{self.ports.get(name, 0)}")]
        return [
            (name, f"reverse:{url or _NOWHERE}@{self.ports.get(name) or free_port(self.listen_host)}")
            for name, url in self.routes.items()
        ]


_NOWHERE = "http://127.0.0.1:9"
"""The upstream of a mock-only route (`inventory=@9001`): never contacted, the mock answers every call."""


def parse_route(text: str) -> tuple[str, str, int]:
    """`NAME=URL[@PORT]` → (name, normalised URL, port or 0); `NAME=@PORT` (no URL, for a mock) → URL ''."""
    name, sep, rest = text.partition("=")
    if not sep or not name.strip():
        raise ProxyError(f"--route {text!r} must be NAME=URL[@PORT], e.g. inventory=http://127.0.0.1:5001@9001")
    url, at, port = rest.rpartition("@") if "@" in rest else (rest, "", "0")
    if at and not port.isdigit():
        raise ProxyError(f"--route {text!r}: {port!r} after @ is not a port")
    return name.strip(), parse_upstream(url) if url else "", int(port)


def check_routes(parsed: list[tuple[str, str, int]], *, mock: bool, on_miss: str) -> None:
    """Two routes on one port, one name twice, or a route without URL that a call could be forwarded to."""
    names: set[str] = set()
    ports: dict[int, str] = {}
    for name, url, port in parsed:
        if name in names:
            raise ProxyError(f"--route {name}: given twice; one route per dependency")
        names.add(name)
        if port and port in ports:
            raise ProxyError(f"--route {name} and --route {ports[port]} both ask for port {port}; give each its own")
        ports[port] = name
        if not url and (not mock or on_miss == "forward"):
            why = "--on-miss forward needs" if mock else "without --mock the tap forwards, so it needs"
            raise ProxyError(f"--route {name}=@{port}: {why} the real URL, e.g. {name}=http://127.0.0.1:5001@{port}")


def run_tap(settings: TapSettings, *, on_listening: Callable[[dict[str, str]], None]) -> Tap:
    """Serves until SIGINT or SIGTERM; the upstream log is closed by then."""
    for port in [*settings.ports.values(), settings.forward_port]:
        if port:
            check_listen_address(settings.listen_host, port)
    settings.confdir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_serve(settings, on_listening))


async def _serve(settings: TapSettings, on_listening: Callable[[dict[str, str]], None]) -> Tap:
    listeners = settings.listeners()
    tap = Tap(on_running=lambda: on_listening(_listening_urls([name for name, _ in listeners])))
    mocking = (
        {"tap_mock": str(settings.mock), "tap_on_miss": settings.on_miss,
         "tap_mock_corpus": str(settings.mock_corpus) if settings.mock_corpus else ""}
        if settings.mock else {}
    )  # fmt: skip
    await serve_master(
        [tap],
        confdir=str(settings.confdir),
        mode=[spec for _, spec in listeners],
        listen_host=settings.listen_host,
        tap_output=str(settings.output),
        tap_routes=",".join(f"{name}={spec}" for name, spec in listeners if settings.routes),
        tap_faults=str(settings.faults) if settings.faults else "",
        tap_seed=settings.seed,
        tap_timeout=settings.timeout_s,
        tap_policy=str(settings.policy) if settings.policy else "",
        tap_default_sanitize=settings.default_sanitize,
        tap_pseudonym_key_file=str(settings.pseudonym_key_file) if settings.pseudonym_key_file else "",
        tap_mock_rules=str(settings.mock_rules) if settings.mock_rules else "",
        tap_whole_calls=settings.whole_calls,
        ssl_insecure=settings.insecure,
        ssl_verify_upstream_trusted_ca=str(settings.upstream_ca) if settings.upstream_ca else None,
        **mocking,
    )
    return tap


def _listening_urls(names: list[str]) -> dict[str, str]:
    """Each dependency's real listening address once the servers are up (ports may have been 0)."""
    addresses = ctx.master.addons.get("proxyserver").listen_addrs()
    return {name: f"http://{host}:{port}" for name, (host, port, *_) in zip(names, addresses)}