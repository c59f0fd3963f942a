"""Credentials at replay: test accounts in place of the recorded (pseudonymized) principals, re-signed JWTs.

The recorder pseudonymizes credentials by default, so a corpus holds no
secret but still tells principals apart: one recorded `Authorization`,
session cookie or API key stands for one user. At replay:

- `Identities` (an accounts file, `--identities`, read by `replayer.accounts`) maps each recorded principal
  to one test account, round-robin in order of first appearance in the corpus,
  so requests of one principal stay one account's on every target. An account
  gives its credentials directly (`header`, `cookie`) or names a login request
  whose answer's token (a JSON path) or `Set-Cookie` is captured, per target,
  up front, and again when a target answers 401.
- `JwtSigner` (`--jwt-key`, `replayer.jwtsign`) re-signs recorded JWTs with a key the sandbox
  trusts: the recorded (pseudonymized) claims, a fresh `iat`/`exp`.

Nothing here is ever written to a corpus, a results file or a report: the
rewrite happens on the request just before it is sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING

from replaydiff.corpora import Exchange, Headers, ReplayRecord, Request, Response
from replaydiff.replayer.accounts import Account, CredentialsError, Identities, render_login_body
from replaydiff.replayer.correlate import CarryRules, harvest
from replaydiff.replayer.targets import Target

if TYPE_CHECKING:  # PyJWT and cryptography load only when a key is given: a tenth of a replay's start-up
    from replaydiff.replayer.jwtsign import JwtSigner

LoginSender = Callable[[Target, Request], Awaitable["Response | None"]]
"""How a login goes out: the replay's own client for that target; its answer, or None when there was none."""

PrincipalKey = tuple[str, ...]
"""The recorded values of the credential slots (headers, cookies) a request carries."""


# --- what a principal is ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiveCredentials:
    """What one account sends to one target."""

    headers: Headers = field(default_factory=list)
    cookies: Headers = field(default_factory=list)


def _cookie_pairs(value: str) -> list[tuple[str, str]]:
    pairs = []
    for part in value.split(";"):
        name, sep, cookie = part.strip().partition("=")
        if sep:
            pairs.append((name, cookie))
    return pairs


def _set_cookies(response: Response) -> list[tuple[str, str]]:
    found = []
    for name, value in response.headers:
        if name.lower() == "set-cookie":
            try:
                found += [(morsel.key, morsel.value) for morsel in SimpleCookie(value).values()]
            except CookieError:
                continue
    return found


def _with_credentials(request: Request, live: LiveCredentials) -> Request:
    """The request with the account's headers in place of same-named ones and its cookies in the Cookie header."""
    replaced = {name.lower() for name, _ in live.headers}
    headers = [(n, v) for n, v in request.headers if n.lower() not in replaced]
    headers += live.headers
    if live.cookies:
        own = dict(live.cookies)
        cookie_index = next((i for i, (n, _) in enumerate(headers) if n.lower() == "cookie"), None)
        recorded = _cookie_pairs(headers[cookie_index][1]) if cookie_index is not None else []
        kept = [(n, v) for n, v in recorded if n not in own]
        value = "; ".join(f"{n}={v}" for n, v in [*kept, *live.cookies])
        if cookie_index is None:
            headers.append(("Cookie", value))
        else:
            headers[cookie_index] = (headers[cookie_index][0], value)
    return replace(request, headers=headers)



# --- the rewrite -------------------------------------------------------------------------------------------

RELOGIN_INTERVAL_S = 1.0
"""An account logs in again at most this often per target: an endpoint that answers 401 to a valid session
(a permission it lacks) must not turn every one of its requests into a login."""


class Credentials:
    """What the engine asks: `rewrite` each request for a target; `relogin` after a 401.

    Built once per replay; `prepare` logs every login account in on every target (once, up front).
    Forked replay processes inherit the logged-in state.
    """

    def __init__(self, identities: Identities | None = None, jwt_signer: JwtSigner | None = None) -> None:
        self.identities = identities
        self.jwt = jwt_signer
        self._accounts = identities.accounts if identities else ()
        self._assignment: dict[PrincipalKey, int] = {}
        self._live: dict[tuple[int, str], LiveCredentials] = {}
        self._generation: dict[tuple[int, str], int] = {}
        self._locks: dict[tuple[int, str], asyncio.Lock] = {}
        self._logged_in_at: dict[tuple[int, str], float] = {}
        self._header_slots = frozenset(name.lower() for account in self._accounts for name in _header_names(account))
        self._cookie_slots: set[str] = {name for account in self._accounts for name, _ in account.cookies}
        logins = {account.login for account in self._accounts if account.login is not None}
        self._login_requests = {(login.method, login.path.partition("?")[0]) for login in logins}
        self._login_endpoints = {f"{method} {path}" for method, path in self._login_requests}
        self._token_rules = [CarryRules(json_paths=(login.token,)) for login in logins if login.token is not None]
        self._secrets: list[str] | None = None
        """Every credential value sent, longest first; None until asked for after a (re)login."""

    # up front

    async def prepare(self, targets: list[Target], send: LoginSender) -> None:
        """Logs in every login account on every target; `send(target, request)` returns its Response or None
        (what the replay's own client answered). A failed login is an error here, before any replayed request."""
        for index, account in enumerate(self._accounts):
            for target in targets:
                if account.login is None:
                    self._live[index, target.name] = LiveCredentials(list(account.headers), list(account.cookies))
                else:
                    self._live[index, target.name] = await self._log_in(account, target, send)
        self._cookie_slots |= {name for live in self._live.values() for name, _ in live.cookies}
        self._secrets = None

    async def _log_in(self, account: Account, target: Target, send: LoginSender) -> LiveCredentials:
        assert account.login is not None
        login = account.login
        response = await send(target, account.login_request(target))
        where = f"login of account {account.name!r} on {target.name} ({login.method} {target.base_url}{login.path})"
        if response is None:
            raise CredentialsError(f"{where} got no answer; check the target and the login path")
        if response.status >= 400:
            raise CredentialsError(f"{where} answered {response.status}; check the account's username and password")
        if login.token is None:
            cookies = _set_cookies(response)
            if not cookies:
                raise CredentialsError(f"{where} set no cookie; name the token's place with token = \"$.path\"")
            return LiveCredentials(list(account.headers), cookies)
        rules = CarryRules(json_paths=(login.token,))
        token = next((v for location, v in harvest(response, rules).items() if rules.forces(location)), None)
        if token is None:
            raise CredentialsError(f"{where}: its answer has no token at the login's token path")
        value = f"{login.scheme} {token}" if login.scheme else str(token)
        return LiveCredentials([*account.headers, (login.header, value)], list(account.cookies))

    def assign(self, exchanges: Iterable[Exchange]) -> int:
        """Principals to accounts, round-robin in order of first appearance: the same for every process
        of a sharded replay, whichever sessions it gets. Returns the number of principals."""
        for exchange in exchanges:
            self._account_of(exchange)
        return len(self._assignment)

    def secrets(self) -> list[str]:
        """Every credential value sent, to be masked wherever it might be echoed."""
        if self._secrets is None:
            found = set(self.identities.secrets() if self.identities else [])
            for live in self._live.values():
                found.update(value for _, value in (*live.headers, *live.cookies) if len(value) >= 4)
                found.update(v.split(" ", 1)[1] for _, v in live.headers if " " in v and len(v.split(" ", 1)[1]) >= 4)
            self._secrets = sorted(found, key=len, reverse=True)
        return self._secrets

    # per request

    def _principal(self, exchange: Exchange) -> PrincipalKey | None:
        values: list[str] = []
        for name, value in exchange.request.headers:
            lowered = name.lower()
            if lowered in self._header_slots:
                values.append(f"{lowered}:{value}")
            elif lowered == "cookie" and self._cookie_slots:
                values += [f"cookie:{n}={v}" for n, v in _cookie_pairs(value) if n in self._cookie_slots]
        if not values and self._is_login(exchange.request) and exchange.response is not None:
            # a recorded login: its principal is who the answer's cookie made it
            values = [f"cookie:{n}={v}" for n, v in _set_cookies(exchange.response) if n in self._cookie_slots]
        return tuple(sorted(values)) if values else None

    def _is_login(self, request: Request) -> bool:
        return (request.method.upper(), request.path) in self._login_requests

    def _account_of(self, exchange: Exchange) -> int | None:
        if not self._accounts or (key := self._principal(exchange)) is None:
            return None
        if (index := self._assignment.get(key)) is None:
            index = self._assignment[key] = len(self._assignment) % len(self._accounts)
        return index

    def rewrite(self, exchange: Exchange, request: Request, target: str, *, anyone: bool = False) -> Request:
        """`request`: the recorded one, perhaps already rewritten by correlation; the principal is the recorded one's.
        `anyone`: a request without a recorded principal (a generated one) is sent as the first account."""
        if self.jwt is not None:  # first: an account's own token (a login's JWT) is sent as it was given
            headers = [(name, self.jwt.resign_header(value)) for name, value in request.headers]
            if headers != request.headers:
                request = replace(request, headers=headers)
        index = self._account_of(exchange)
        if index is None and anyone and self._accounts:
            index = 0
        if index is not None and (live := self._live.get((index, target))) is not None:
            request = _with_credentials(request, live)
            account = self._accounts[index]
            if account.login is not None and self._is_login(exchange.request):
                request = replace(request, body=render_login_body(account).encode("utf-8"))
        return request

    def masked(self, record: ReplayRecord) -> ReplayRecord:
        """The record as written: every credential sent masked wherever a target echoed it, and the session
        cookies and tokens a replayed login was given masked too."""
        secrets = self.secrets()
        response = record.response
        if response is not None and self._cookie_slots:
            given = [value for name, value in _set_cookies(response) if name in self._cookie_slots and len(value) >= 4]
            secrets = [*secrets, *given] if given else secrets
        if response is not None and record.endpoint in self._login_endpoints:
            for rules in self._token_rules:
                secrets = [*secrets, *(str(v) for at, v in harvest(response, rules).items() if rules.forces(at))]
        return masked_record(record, secrets)

    def account_index(self, exchange: Exchange) -> int | None:
        """Which account a recorded exchange goes out as (None: it names no principal)."""
        return self._account_of(exchange)

    def can_relogin(self, exchange: Exchange) -> bool:
        index = self._account_of(exchange)
        return index is not None and self._accounts[index].login is not None

    async def relogin(self, exchange: Exchange, target: Target, send: LoginSender, seen_generation: int) -> None:
        """After a 401: one login per account and target however many requests saw the 401 at once."""
        index = self._account_of(exchange)
        assert index is not None
        key = (index, target.name)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if self._generation.get(key, 0) != seen_generation:
                return  # another request already logged in again
            if time.monotonic() - self._logged_in_at.get(key, float("-inf")) < RELOGIN_INTERVAL_S:
                return  # fresh credentials answered 401 too: a real 401, not an expired session
            self._logged_in_at[key] = time.monotonic()
            try:
                self._live[key] = await self._log_in(self._accounts[index], target, send)
                self._secrets = None
            except CredentialsError:
                return  # the request keeps its 401: the report shows it
            self._generation[key] = seen_generation + 1

    def generation(self, exchange: Exchange, target: str) -> int:
        index = self._account_of(exchange)
        return 0 if index is None else self._generation.get((index, target), 0)


def mask_secrets(text: bytes, secrets: Iterable[str], mask: bytes = b"[masked]") -> bytes:
    """Every occurrence of a sent credential replaced, longest first: what a target echoes must not reach a
    results file."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret and (encoded := secret.encode("utf-8")) in text:
            text = text.replace(encoded, mask)
    return text




def _masked_text(text: str, secrets: list[str]) -> str:
    return mask_secrets(text.encode("utf-8", "surrogateescape"), secrets).decode("utf-8", "surrogateescape")


def _header_names(account: Account) -> list[str]:
    """The headers an account's credentials replace: its own, and the one a login's token goes out in."""
    login = [account.login.header] if account.login and account.login.token else []
    return [name for name, _ in account.headers] + login


def masked_record(record: ReplayRecord, secrets: list[str]) -> ReplayRecord:
    """The record with every sent credential masked in the answer (a login's token, a header a target echoes)."""
    response = record.response
    if response is None or not secrets:
        return record
    body = mask_secrets(response.body, secrets)
    headers = [(name, _masked_text(value, secrets)) for name, value in response.headers]
    if body is response.body and headers == response.headers:
        return record
    return replace(record, response=replace(response, body=body, headers=headers))
