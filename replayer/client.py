"""Send one recorded request to one target and observe exactly what happened.

Each target has its own aiohttp session and connection pool, so a slow
candidate cannot delay the baseline's requests. The request goes out as
recorded: the path and query exactly as they were on the wire, the recorded
headers (no client defaults added), the recorded body. Redirects are never
followed: a 3xx is itself an answer to compare. Failures become `Attempt`s
with an error kind; nothing a target does can crash the replay.

Why aiohttp rather than httpx: on this workload httpx spent most of its time
in its connection pool's bookkeeping and reached a fraction of aiohttp's rate.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from corpora import Attempt, Headers, Request, Response
from replayer.targets import Target

# Headers that describe one hop's connection or are recomputed by the client for the body it sends.
_NOT_FORWARDED = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade", "content-length"}
)
# aiohttp adds these when absent; a replay sends only what was recorded.
_NO_DEFAULTS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")

MAX_BODY = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect_s: float = 5.0
    read_s: float = 30.0

    def for_aiohttp(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=None, connect=self.connect_s, sock_read=self.read_s)


@dataclass(frozen=True, slots=True)
class TLSOptions:
    ca_file: str | None = None
    insecure: bool = False

    def for_aiohttp(self) -> ssl.SSLContext | bool:
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


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "refused"
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError)):
        return "reset"  # the peer closed or broke the connection before the answer was complete
    if isinstance(exc, aiohttp.ClientResponseError):
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
        self._timeout = timeouts.for_aiohttp()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, ssl=tls.for_aiohttp()),
            timeout=self._timeout,
            auto_decompress=True,  # bodies are compared (and stored) decoded
            skip_auto_headers=_NO_DEFAULTS,
            trust_env=False,  # a replay must reach exactly the target the user named, never a proxy from the env
            cookie_jar=aiohttp.DummyCookieJar(),  # cookies are the corpus's, not a client jar's
        )

    async def send(
        self, request: Request, *, epoch_ns: int, extra_headers: Headers = (), span_id: str = ""
    ) -> tuple[Attempt, Response | None]:
        """`epoch_ns` is the replay's start on the perf_counter clock; attempt times are offsets from it."""
        started = time.perf_counter_ns()
        ttfb_us: int | None = None
        detail: str | None = None
        response: Response | None = None
        error: str | None = None
        try:
            async with self._session.request(
                request.method,
                URL(self.target.base_url + request.target, encoded=True),
                headers=CIMultiDict(outgoing_headers(request, self.target, extra_headers)),
                data=request.body or None,
                allow_redirects=False,
            ) as answer:
                ttfb_us = (time.perf_counter_ns() - started) // 1000
                body, truncated = await self._read(answer)
                if truncated:
                    detail = f"body truncated at {self._max_body} bytes"
                response = Response(
                    status=answer.status,
                    reason=answer.reason or "",
                    http_version=f"HTTP/{answer.version.major}.{answer.version.minor}" if answer.version else "",
                    headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.raw_headers],
                    body=body,
                    original_encoding=answer.headers.get("Content-Encoding"),
                )
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
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

    async def _read(self, answer: aiohttp.ClientResponse) -> tuple[bytes, bool]:
        """Up to the cap: a target answering a huge body must not exhaust the replayer's memory."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in answer.content.iter_chunked(1 << 16):
            chunks.append(chunk)
            size += len(chunk)
            if size > self._max_body:
                return b"".join(chunks)[: self._max_body], True
        return b"".join(chunks), False

    async def aclose(self) -> None:
        await self._session.close()
