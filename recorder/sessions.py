"""Sessions are clients, not connections: which recorded exchanges one client made in one sitting.

A replay keeps a session's requests in order, one at a time, and carries the
values its earlier answers returned into its later requests. Both only hold if
a session is what the client saw as one: a client reconnects whenever a server
closes the connection (some close after every 304), and a browser opens six at
once, so one connection per session splits a client into many sessions that
overlap at replay and lose what they learned.

A client is known by its strongest identity in the request:
1. its credentials: `Authorization`, `Proxy-Authorization`, or an API-key header (`X-Api-Key`, `Api-Key`, ...);
2. else its session cookie: a cookie whose name says session, sid, auth or token;
3. else its address plus its `User-Agent`.
Only the strongest counts: an unknown credential is a new client even when an anonymous client with the same
address and agent came before (behind a NAT or a load generator, many do). A session cookie an answer sets, and
a token a JSON answer hands out (`token`, `access_token`, `id_token`, sent back as `Authorization: Bearer`),
belong to the session of the request they answered: a login and what follows it stay one session.

Identities are keyed pseudonyms (`recorder.pseudonym`, the corpus's own key) of those values, computed from the
request before it is sanitized: a raw secret is never kept, and a masked one (`[masked]` for everybody) never
merges clients. A client quiet for longer than the gap starts a new session. Sessions are named `client-N` in
the order they first appear. `connection` keeps the capture's own key: one session per TCP connection.
"""

from __future__ import annotations

import json
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
_SESSION_ID = re.compile(r"sess|sid", re.IGNORECASE)
_TOKEN_KEY = re.compile(r"(access_?|id_?)?token", re.IGNORECASE)
_MAX_LOGIN_BODY = 64 * 1024
_JSON_OBJECT = re.compile(rb"\s*\{")
_TOKEN_WORD = re.compile(rb"token", re.IGNORECASE)
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
            # What an answer hands the client to identify itself later belongs to this session: a login and
            # what follows it stay one session.
            for cookie in _session_cookies(exchange.response.headers, "set-cookie"):
                self._sessions[self._identity("cookie", cookie)] = session
            for token in _bearer_tokens(exchange.response.body):
                self._sessions[self._identity("credential", f"authorization:Bearer {token}")] = session
        return exchange if exchange.session == session.key else replace(exchange, session=session.key)

    def _session_of(self, exchange: Exchange, client_address: str | None) -> _Session:
        """Only the strongest identity counts: falling back to the address for an unknown credential would put
        every client behind one address and agent (a NAT, a load generator) into one session."""
        identity = self._identity(*_identity(exchange.request.headers, client_address))
        session = self._sessions.get(identity)
        if session is None or exchange.start_us - session.last_end_us > self.gap_us:
            self._count += 1
            session = self._sessions[identity] = _Session(f"client-{self._count}", exchange.start_us)
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


def _identity(headers: Headers, client_address: str | None) -> tuple[str, str]:
    """The client's strongest identity in the request: credentials, else a session cookie, else address + agent."""
    agent = ""
    for name, value in headers:
        lowered = name.lower()
        if _CREDENTIAL_HEADERS.fullmatch(lowered):
            return "credential", f"{lowered}:{value}"
        if lowered == "user-agent":
            agent = value
    cookies = _session_cookies(headers, "cookie")
    if cookies:  # several: a session id before a token (a CSRF token may change on every answer)
        return "cookie", min(cookies, key=lambda cookie: (_SESSION_ID.search(cookie.partition("=")[0]) is None, cookie))
    return "client", f"{client_address or ''} {agent}"


def _bearer_tokens(body: bytes) -> list[str]:
    """Tokens a login answer hands out: string members named `token`, `access_token`, `id_token` of a JSON object."""
    if not body or len(body) > _MAX_LOGIN_BODY or not _JSON_OBJECT.match(body) or not _TOKEN_WORD.search(body):
        return []
    try:
        document = json.loads(body)
    except ValueError:
        return []
    found: list[str] = []
    nodes = [document]
    while nodes:
        node = nodes.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and _TOKEN_KEY.fullmatch(str(key)):
                    found.append(value)
                elif isinstance(value, (dict, list)):
                    nodes.append(value)
        elif isinstance(node, list):
            nodes.extend(node)
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
