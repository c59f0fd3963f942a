"""Targets: where a replay sends its requests, and which of them may receive writes."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from replaydiff.corpora import Headers

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ReplayError(Exception):
    """Base for problems that stop a replay before it starts."""


class InvalidTarget(ReplayError):
    pass


class UnreachableTarget(ReplayError):
    pass


class UnsafeTarget(ReplayError):
    """Mutating requests would go to a host the user did not allow."""


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    base_url: str
    headers: Headers = field(default_factory=list)
    """Extra headers for this target only, e.g. a sandbox routing key."""

    @classmethod
    def parse(cls, name: str, url: str, headers: Headers | None = None) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidTarget(f"--{name} {url!r} is not an http(s) URL; expected e.g. http://127.0.0.1:8080")
        try:
            parts.port
        except ValueError as exc:
            raise InvalidTarget(f"--{name} {url!r} has an invalid port") from exc
        return cls(name, url.rstrip("/"), list(headers or []))

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.base_url)
        return parts.port or (443 if parts.scheme == "https" else 80)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_write_safety(targets: list[Target], allowed_hosts: set[str], *, corpus_mutates: bool) -> None:
    """Refuse before the first request: replaying writes against production is the one unforgivable mistake."""
    if not corpus_mutates:
        return
    for target in targets:
        if not is_loopback(target.host) and target.host not in allowed_hosts:
            raise UnsafeTarget(
                f"the corpus has POST/PUT/PATCH/DELETE requests and {target.name} {target.base_url} is not "
                f"an allowed host; pass --allow-host {target.host} if it is a sandbox that may receive writes"
            )


async def check_reachable(target: Target, *, timeout_s: float = 3.0) -> None:
    """A TCP connect only, so checking sends no request the target could act on."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(target.host, target.port), timeout_s)
    except (OSError, asyncio.TimeoutError) as exc:
        if isinstance(exc, asyncio.TimeoutError):
            reason = "timed out"
        else:
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
        raise UnreachableTarget(
            f"{target.name} {target.base_url} is unreachable ({reason}); start it or fix --{target.name}"
        ) from exc
    writer.close()
