"""The accounts file of `--identities`: test accounts, their credentials or their login, one-line errors.

Any value may name environment variables as `${NAME}` (`expand_environment`), so a file kept in a
repository, or a nightly suite, need not hold a secret.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replaydiff.corpora import Headers, Request
from replaydiff.corpora.tomlfile import read_toml
from replaydiff.replayer.correlate import CarryRulesError, exact_json_path  # correlation's `$.path` places
from replaydiff.replayer.targets import ReplayError, Target


class CredentialsError(ReplayError):
    """An accounts file, a login or a JWT key that cannot be used; raised before the replay starts."""


@dataclass(frozen=True, slots=True)
class Login:
    """A request that logs an account in; its answer's token or cookies are the account's credentials."""

    method: str
    path: str
    body: str
    """With `{username}` and `{password}` in place of the account's."""
    content_type: str = "application/json"
    token: tuple[str | int, ...] | None = None
    """Where the answer's token is (a `$.path`, as in correlation rules); None: the answer's `Set-Cookie`."""
    header: str = "Authorization"
    scheme: str = "Bearer"
    """With `token`: the token goes out as `header: scheme token` (scheme "" for the token alone)."""


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    headers: Headers = field(default_factory=list)
    cookies: Headers = field(default_factory=list)
    login: Login | None = None
    username: str = ""
    password: str = ""

    def login_request(self, target: Target) -> Request:
        assert self.login is not None
        path, _, query = self.login.path.partition("?")
        body = render_login_body(self).encode("utf-8")
        headers = [("Host", _host_header(target)), ("Content-Type", self.login.content_type), ("Accept", "*/*")]
        scheme = "https" if target.base_url.startswith("https") else "http"
        return Request(self.login.method, scheme, target.host, target.port, path, query, headers=headers, body=body)

    def secrets(self) -> list[str]:
        values = [self.password] + [value for _, value in (*self.headers, *self.cookies)]
        return [value for value in values if len(value) >= 4]


def render_login_body(account: Account) -> str:
    """The login body with the account's username and password in place of `{username}` and `{password}`."""
    assert account.login is not None
    return account.login.body.replace("{username}", account.username).replace("{password}", account.password)


def _host_header(target: Target) -> str:
    default = 443 if target.base_url.startswith("https") else 80
    return target.host if target.port == default else f"{target.host}:{target.port}"


_ACCOUNT_KEYS = {"name", "header", "headers", "cookie", "cookies", "username", "password", "login"}
_LOGIN_KEYS = {"method", "path", "body", "content_type", "token", "header", "scheme"}
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def load_identities(path: Path) -> Identities:
    """Accounts from a TOML file: `[[account]]` tables. Any value may name environment variables as
    `${NAME}`, so secrets need not sit in the file."""
    data = read_toml(path, CredentialsError)
    if unknown := set(data) - {"account", "login"}:
        raise CredentialsError(f"{path}: unknown key {sorted(unknown)[0]!r}; expected [[account]] tables and [login]")
    shared = data.get("login")
    tables = data.get("account")
    if not isinstance(tables, list) or not tables:
        raise CredentialsError(f"{path}: no [[account]] table; give at least one test account")
    accounts = [_account(path, number, table, shared) for number, table in enumerate(tables, start=1)]
    return Identities(tuple(accounts))


def _account(path: Path, number: int, table: Any, shared: Any) -> Account:
    where = f"{path}: [[account]] #{number}"
    if not isinstance(table, dict):
        raise CredentialsError(f"{where}: must be a table")
    if unknown := set(table) - _ACCOUNT_KEYS:
        expected = ", ".join(sorted(_ACCOUNT_KEYS))
        raise CredentialsError(f"{where}: unknown key {sorted(unknown)[0]!r}; expected {expected}")
    text = {key: expand_environment(value, f"{where}.{key}") for key, value in table.items() if key != "login"}
    name = str(text.get("name", f"account-{number}"))
    where = f"{path}: account {name!r}"
    headers = [_pair(item, ":", f"{where}.header", "'Name: value'") for item in _items(text, "header", where)]
    cookies = [_pair(item, "=", f"{where}.cookie", "'name=value'") for item in _items(text, "cookie", where)]
    login_table = table.get("login", shared if "username" in table or "password" in table else None)
    login = _login(login_table, where) if login_table is not None else None
    if login is None and not headers and not cookies:
        raise CredentialsError(f"{where}: gives no credentials; set header = 'Name: value', cookie = 'name=value', "
                               "or username, password and a [login] request")  # fmt: skip
    if login is not None and not ("username" in text and "password" in text):
        raise CredentialsError(f"{where}: a login needs username and password")
    return Account(name, headers, cookies, login, str(text.get("username", "")), str(text.get("password", "")))


def expand_environment(value: Any, where: str) -> Any:
    """`${NAME}` replaced by the environment variable NAME (in strings, and in lists of them); unset is an error."""
    if isinstance(value, list):
        return [expand_environment(item, where) for item in value]
    if not isinstance(value, str):
        return value

    def variable(match: re.Match[str]) -> str:
        if (found := os.environ.get(match.group(1))) is None:
            raise CredentialsError(f"{where}: environment variable {match.group(1)} is not set")
        return found

    return ENV_REFERENCE.sub(variable, value)


def _items(table: dict[str, Any], key: str, where: str) -> list[str]:
    values = [*_as_list(table.get(key)), *_as_list(table.get(key + "s"))]
    if not all(isinstance(value, str) and value for value in values):
        raise CredentialsError(f"{where}.{key}: must be a string or a list of strings")
    return values


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def _pair(text: str, separator: str, where: str, shape: str) -> tuple[str, str]:
    name, sep, value = text.partition(separator)
    if not sep or not name.strip() or not value.strip():
        raise CredentialsError(f"{where}: {text[:20]!r}… is not {shape}")
    return name.strip(), value.strip()


def _login(table: Any, where: str) -> Login:
    if not isinstance(table, dict):
        raise CredentialsError(f"{where}: login must be a table (method, path, body, token)")
    if unknown := set(table) - _LOGIN_KEYS:
        expected = ", ".join(sorted(_LOGIN_KEYS))
        raise CredentialsError(f"{where}: login: unknown key {sorted(unknown)[0]!r}; expected {expected}")
    if not isinstance(table.get("path"), str) or not table["path"].startswith("/"):
        raise CredentialsError(f"{where}: login.path must be a path such as \"/login\"")
    token = table.get("token")
    if token is not None and (not isinstance(token, str) or not token.startswith("$.")):
        raise CredentialsError(f"{where}: login.token must be a JSON path such as \"$.access_token\"")
    try:
        token_path = exact_json_path(token, f"{where}: login.token") if token else None
    except CarryRulesError as exc:
        raise CredentialsError(str(exc)) from None
    return Login(
        method=str(table.get("method", "POST")).upper(),
        path=table["path"],
        body=str(table.get("body", '{"username": "{username}", "password": "{password}"}')),
        content_type=str(table.get("content_type", "application/json")),
        token=token_path,
        header=str(table.get("header", "Authorization")),
        scheme=str(table.get("scheme", "Bearer")),
    )


@dataclass(frozen=True)
class Identities:
    accounts: tuple[Account, ...]

    def secrets(self) -> list[str]:
        return [secret for account in self.accounts for secret in account.secrets()]

