"""Send one recorded request to one target and observe exactly what happened.

Each target has its own httpx client and connection pool, so a slow candidate
cannot delay the baseline's requests. Redirects are never followed: a 3xx is
itself an answer to compare. Failures become `Attempt`s with an error kind;
nothing a target does can crash the replay.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

import httpx

from corpora import Attempt, Headers, Request, Response
from replayer.targets import Target

# Headers that describe one hop's connection or are recomputed by the client for the body it sends.
_NOT_FORWARDED = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade", "content-length"}
)


MAX_BODY = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float = 5.0
    read_s: float = 30.0

    def for_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(self.read_s, connect=self.connect_s, pool=None)


@dataclass(frozen=True, slots=True)
class TLSOptions:
    ca_file: str | None = None
    insecure: bool = False

    def for_httpx(self) -> ssl.SSLContext | bool:
        if self.insecure:
            return False
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True


def outgoing_headers(request: Request, target: Target, extra: Headers = ()) -> Headers:
    """The recorded headers (Host included) plus the target's own and `extra`, which replace same-named ones."""
    added = [*target.headers, *extra]
    overridden = {name.lower() for name, _ in added}
    kept = [
        (name, value)
        for name, value in request.headers
        if name.lower() not in _NOT_FORWARDED and name.lower() not in overridden
    ]
    return kept + added


def _error_kind(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "refused"
    if isinstance(exc, (httpx.ReadError, httpx.WriteError)):
        return "reset"
    if isinstance(exc, httpx.RemoteProtocolError) and "disconnected" in str(exc).lower():
        return "reset"  # the peer closed the connection before answering
    if isinstance(exc, httpx.ProtocolError):
        return "protocol"  # it answered, but not with HTTP
    return "other"


class TargetClient:
    def __init__(
        self,
        target: Target,
        *,
        timeouts: Timeouts,
        tls: TLSOptions = TLSOptions(),
        max_connections: int = 200,
        max_body: int = MAX_BODY,
    ) -> None:
        self.target = target
        self._max_body = max_body
        self._client = httpx.AsyncClient(
            base_url=target.base_url,
            follow_redirects=False,
            timeout=timeouts.for_httpx(),
            verify=tls.for_httpx(),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            trust_env=False,  # a replay must reach exactly the target the user named, never a proxy from the env
        )

    async def send(
        self, request: Request, *, epoch_ns: int, extra_headers: Headers = (), span_id: str = ""
    ) -> tuple[Attempt, Response | None]:
        """`epoch_ns` is the replay's start on the perf_counter clock; attempt times are offsets from it."""
        started = time.perf_counter_ns()
        ttfb_us: int | None = None
        detail: str | None = None
        try:
            async with self._client.stream(
                request.method,
                request.target,
                headers=outgoing_headers(request, self.target, extra_headers),
                content=request.body or None,
            ) as answer:
                ttfb_us = (time.perf_counter_ns() - started) // 1000
                body, truncated = await self._read(answer)
                if truncated:
                    detail = f"body truncated at {self._max_body} bytes"
                response = Response(
                    status=answer.status_code,
                    reason=answer.reason_phrase,
                    http_version=answer.http_version,
                    headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.headers.raw],
                    body=body,
                    original_encoding=answer.headers.get("content-encoding"),
                )
            error: str | None = None
        except httpx.HTTPError as exc:
            response = None
            error = _error_kind(exc)
            detail = f"{type(exc).__name__}: {exc}"[:300]
        ended = time.perf_counter_ns()
        attempt = Attempt(
            sent_us=(started - epoch_ns) // 1000,
            ttfb_us=ttfb_us,
            duration_us=(ended - started) // 1000,
            status=response.status if response else None,
            error=error,  # type: ignore[arg-type]
            error_detail=detail,
            span_id=span_id,
        )
        return attempt, response

    async def _read(self, answer: httpx.Response) -> tuple[bytes, bool]:
        """Up to the cap: a target answering a huge body must not exhaust the replayer's memory."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in answer.aiter_bytes():
            chunks.append(chunk)
            size += len(chunk)
            if size > self._max_body:
                return b"".join(chunks)[: self._max_body], True
        return b"".join(chunks), False

    async def aclose(self) -> None:
        await self._client.aclose()
