"""Safe default sanitization: secrets never reach a corpus, everything else stays byte-identical.

A policy is a tuple of rules. Each rule names the place it looks at (a header
or a query parameter), a pattern for the names it applies to, the shape of the
value (which part of it is secret), and an action. Today the only action is
`mask` and the only policy is the built-in defaults; the rule fields are the
ones a TOML policy with `drop` / `pseudonymize` will need, and the policy
digest covers all of them, so a corpus header tells exactly which rules ran.

Masking keeps the name and the shape of a value: `Bearer [masked]` keeps the
auth scheme, `sid=[masked]; theme=[masked]` keeps cookie names, a Set-Cookie
keeps its attributes, and a query string is only changed inside the replaced
values, so replays and diffs still see the same structure.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import cache, cached_property
from typing import Literal
from urllib.parse import unquote_plus

from corpora import Exchange, Headers, Request, Response

MASK = "[masked]"
QUERY_MASK = "%5Bmasked%5D"
"""The same mask percent-encoded, so a sanitized URL stays valid and decodes to `MASK`."""

Place = Literal["header", "query"]
Shape = Literal["whole", "credentials", "cookies", "set-cookie", "url"]
"""Which part of a value is secret:
`whole` the value; `credentials` the part after the auth scheme word;
`cookies` every cookie value of a Cookie header; `set-cookie` the cookie value
before the attributes; `url` the secret query parameters of a URL-valued header
(Referer, Location), masked by the policy's query rules."""
Action = Literal["mask"]

_SECRET_WORDS = r".*(token|secret|passw|api[-_]?key|session|signature|credential).*"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    """Key of this rule in the `fired` counts."""
    place: Place
    pattern: str
    """Regular expression that must match the whole lower-cased (and, for queries, percent-decoded) name."""
    shape: Shape = "whole"
    action: Action = "mask"

    def applies_to(self, place: Place, name: str) -> bool:
        return place == self.place and _compiled(self.pattern).fullmatch(name.lower()) is not None


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@dataclass(frozen=True)
class Policy:
    name: str
    rules: tuple[Rule, ...]
    """First matching rule wins, so specific rules come before catch-alls."""

    @cached_property
    def digest(self) -> str:
        """sha256 of a canonical description: equal digests mean equal sanitization."""
        canonical = json.dumps([asdict(rule) for rule in self.rules], sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def rule_for(self, place: Place, name: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.applies_to(place, name)), None)


DEFAULT_POLICY = Policy(
    name="defaults",
    rules=(
        Rule("authorization", "header", r"(proxy-)?authorization", shape="credentials"),
        Rule("cookie", "header", r"cookie", shape="cookies"),
        Rule("set-cookie", "header", r"set-cookie2?", shape="set-cookie"),
        Rule("url-header", "header", r"referer|location|content-location", shape="url"),
        Rule("secret-header", "header", _SECRET_WORDS + r"|x-auth.*"),
        Rule("secret-query", "query", _SECRET_WORDS + r"|key|sig|pwd|auth"),
    ),
)


Fired = list[str]
"""Names of the rules that changed a value, one entry per value."""


def sanitize_headers(headers: Headers, policy: Policy = DEFAULT_POLICY) -> tuple[Headers, Fired]:
    fired: Fired = []
    result: Headers = []
    for name, value in headers:
        rule = policy.rule_for("header", name)
        if rule is None or not value:
            result.append((name, value))
            continue
        if rule.shape == "url":
            value, url_fired = _sanitize_url(value, policy)
            fired += url_fired
        else:
            value = _MASKERS[rule.shape](value)
            fired.append(rule.name)
        result.append((name, value))
    return result, fired


def sanitize_query(query: str, policy: Policy = DEFAULT_POLICY) -> tuple[str, Fired]:
    """Replaces only the values of secret parameters; separators, order and encoding stay as they were."""
    fired: Fired = []
    parts = query.split("&")
    for index, part in enumerate(parts):
        name, equals, value = part.partition("=")
        rule = policy.rule_for("query", unquote_plus(name)) if value else None
        if rule is not None:
            parts[index] = f"{name}{equals}{QUERY_MASK}"
            fired.append(rule.name)
    return "&".join(parts), fired


def _sanitize_url(url: str, policy: Policy) -> tuple[str, Fired]:
    base, question, rest = url.partition("?")
    if not question:
        return url, []
    query, hash_mark, fragment = rest.partition("#")
    query, fired = sanitize_query(query, policy)
    return f"{base}?{query}{hash_mark}{fragment}", fired


def _mask_credentials(value: str) -> str:
    scheme, space, credentials = value.strip().partition(" ")
    return f"{scheme} {MASK}" if space and credentials.strip() else MASK


def _mask_cookies(value: str) -> str:
    return ";".join(_mask_pair(pair) for pair in value.split(";"))


def _mask_set_cookie(value: str) -> str:
    pair, semicolon, attributes = value.partition(";")
    return f"{_mask_pair(pair)}{semicolon}{attributes}"


def _mask_pair(pair: str) -> str:
    """`name=value` keeps the name; a cookie without `=` is all value."""
    name, equals, _ = pair.partition("=")
    if equals:
        return f"{name}={MASK}"
    if not pair.strip():
        return pair
    return pair[: len(pair) - len(pair.lstrip())] + MASK


def _mask_whole(_value: str) -> str:
    return MASK


_MASKERS: dict[str, Callable[[str], str]] = {
    "whole": _mask_whole,
    "credentials": _mask_credentials,
    "cookies": _mask_cookies,
    "set-cookie": _mask_set_cookie,
}


@dataclass
class Sanitizer:
    """Applies a policy to whole requests and responses and counts which rule fired how often."""

    policy: Policy = DEFAULT_POLICY
    fired: Counter[str] = field(default_factory=Counter)

    def request(self, request: Request) -> Request:
        headers, header_fired = sanitize_headers(request.headers, self.policy)
        query, query_fired = sanitize_query(request.query, self.policy)
        self.fired.update(header_fired + query_fired)
        return replace(request, headers=headers, query=query)

    def response(self, response: Response) -> Response:
        headers, fired = sanitize_headers(response.headers, self.policy)
        self.fired.update(fired)
        return replace(response, headers=headers)

    def exchange(self, exchange: Exchange) -> Exchange:
        response = self.response(exchange.response) if exchange.response else None
        return replace(exchange, request=self.request(exchange.request), response=response)

    def describe(self) -> dict[str, str]:
        """For the corpus header, written before anything fired."""
        return {"policy": self.policy.name, "digest": self.policy.digest}

    def summary(self) -> dict[str, object]:
        """For the corpus end record: the description plus the counts."""
        return {**self.describe(), "fired": dict(sorted(self.fired.items()))}
