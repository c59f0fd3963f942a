"""Sessions are clients, not connections: which recorded exchanges one client made in one sitting.

A replay keeps a session's requests in order, one at a time, and carries the
values its earlier answers returned into its later requests. Both only hold if
a session is what the client saw as one: a client reconnects whenever a server
closes the connection (some close after every 304), and a browser opens six at
once, so one connection per session splits a client into many sessions that
overlap at replay and lose what they learned.

A client is known by, first found wins:
1. its credentials: `Authorization`, `Proxy-Authorization`, or an API-key header (`X-Api-Key`, `Api-Key`, ...);
2. its session cookie: a cookie whose name says session, sid, auth or token; a session cookie that an answer set
   belongs to the session of the request it answered, so a login and what follows it stay one session;
3. its address plus its `User-Agent`.

Identities are keyed pseudonyms (`recorder.pseudonym`, the corpus's own key) of those values, computed from the
request before it is sanitized: a raw secret is never kept, and a masked one (`[masked]` for everybody) never
merges clients. A client quiet for longer than the gap starts a new session. Sessions are named `client-N` in
the order they first appear. `connection` keeps the capture's own key: one session per TCP connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from http.cookies import CookieError, SimpleCookie
from typing import Literal

from replaydiff.corpora import Exchange, Headers
from replaydiff.recorder.pseudonym import Pseudonymizer

SessionBy = Literal["client", "connection"]
SESSION_BY_CHOICES: tuple[SessionBy, ...] = ("client", "connection")
DEFAULT_SESSION_GAP_S = 1800.0
"""Thirty minutes, web analytics' usual visit timeout: long enough that a client reading a page stays one session."""

_CREDENTIAL_HEADERS = re.compile(r"(proxy-)?authorization|x-api-key|api-key|x-auth-token|x-access-token")
_SESSION_COOKIE = re.compile(r".*(sess|sid|auth|token|login).*", re.IGNORECASE)
_PURGE_EVERY = 1024
_MEMO_ENTRIES = 10_000


@dataclass(slots=True)
class _Session:
    key: str
    last_end_us: int


class SessionGrouper:
    """Gives each exchange its client's session key; feed exchanges in start order (or near it, as they finish)."""

    def __init__(self, key: bytes | None, *, by: SessionBy = "client", gap_s: float = DEFAULT_SESSION_GAP_S) -> None:
        """`key`: the sanitizer's pseudonym key (`Sanitizer.key`), so identities are that corpus's pseudonyms."""
        self.by = by
        self.gap_us = round(gap_s * 1_000_000)
        self._pseudonyms = Pseudonymizer(key or b"")
        self._sessions: dict[str, _Session] = {}
        """By identity: the client's current session."""
        self._identities: dict[tuple[str, str], str] = {}
        self._count = 0
        self._seen = 0

    def assign(self, exchange: Exchange, client_address: str | None) -> Exchange:
        """The exchange with its session key; unchanged with `by="connection"`. Call before sanitizing."""
        if self.by == "connection":
            return exchange
        self._seen += 1
        if self._seen % _PURGE_EVERY == 0:
            self._forget_idle(exchange.start_us)
        session = self._session_of(exchange, client_address)
        session.last_end_us = max(session.last_end_us, exchange.start_us + exchange.duration_us)
        if exchange.response is not None:
            for cookie in _session_cookies(exchange.response.headers, "set-cookie"):
                self._sessions[self._identity("cookie", cookie)] = session
        return exchange if exchange.session == session.key else replace(exchange, session=session.key)

    def _session_of(self, exchange: Exchange, client_address: str | None) -> _Session:
        identities = _identities(exchange.request.headers, client_address)
        keyed = [self._identity(kind, value) for kind, value in identities]
        session = next((self._sessions[key] for key in keyed if key in self._sessions), None)
        if session is None or exchange.start_us - session.last_end_us > self.gap_us:
            self._count += 1
            session = _Session(f"client-{self._count}", exchange.start_us)
        self._sessions[keyed[0]] = session  # its strongest identity leads to it from now on
        return session

    def _identity(self, kind: str, value: str) -> str:
        """Memoized: the same credentials and cookies come with every request of a client."""
        identity = self._identities.get((kind, value))
        if identity is None:
            if len(self._identities) >= _MEMO_ENTRIES:
                self._identities.clear()
            identity = self._identities[kind, value] = f"{kind}:{self._pseudonyms.token(value)}"
        return identity

    def _forget_idle(self, now_us: int) -> None:
        """Identities idle beyond the gap would start a new session anyway: forgetting them bounds memory."""
        idle = [key for key, session in self._sessions.items() if now_us - session.last_end_us > self.gap_us]
        for key in idle:
            del self._sessions[key]


def _identities(headers: Headers, client_address: str | None) -> list[tuple[str, str]]:
    """The client's identities in the request, strongest first; the last, address plus User-Agent, is always there."""
    found: list[tuple[str, str]] = []
    agent = ""
    for name, value in headers:
        lowered = name.lower()
        if _CREDENTIAL_HEADERS.fullmatch(lowered):
            found.append(("credential", f"{lowered}:{value}"))
        elif lowered == "user-agent":
            agent = value
    found += [("cookie", cookie) for cookie in _session_cookies(headers, "cookie")]
    found.append(("client", f"{client_address or ''} {agent}"))
    return found


def _session_cookies(headers: Headers, header: str) -> list[str]:
    """`name=value` of the session cookies in the `Cookie` (or each `Set-Cookie`) header."""
    found = []
    for name, value in headers:
        if name.lower() != header:
            continue
        try:
            morsels = SimpleCookie(value).values()
        except CookieError:
            continue
        found += [f"{m.key}={m.value}" for m in morsels if _SESSION_COOKIE.fullmatch(m.key) and m.value]
    return found
