"""The sanitizer: applies a policy to exchanges before anything is written, and counts what it did.

`recorder.walk` finds every value (headers, cookies, query, JSON, forms,
multipart parts, free text); `recorder.policy` says which are secret and what
to do; this module is the judge between them: it picks the rule, applies its
action, and counts each firing by rule name for the corpus end record.

Actions keep what a replay and a diff need: `mask` keeps the name and the
surrounding structure (`Bearer [masked]`, `sid=[masked]; Path=/`, a query
value `%5Bmasked%5D`); `pseudonymize` keeps the value's shape
(`recorder.pseudonym`); `drop` removes the header, cookie, parameter, JSON
member or matched text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from replaydiff.corpora import Exchange, Request, Response, header_value
from replaydiff.corpora.grpc import is_grpc
from replaydiff.corpora.protobuf import ProtoSchema
from replaydiff.recorder.policy import (
    DEFAULT_POLICY,
    Action,
    NamedPlace,
    PatternRule,
    Policy,
    Rule,
    TextView,
    credential_like,
    load_policy,
)
from replaydiff.recorder.pseudonym import Pseudonymizer, key_from
from replaydiff.recorder.echoes import Echoes
from replaydiff.recorder.grpc_walk import UNREAD_RULE, walk_grpc
from replaydiff.recorder.walk import DROP, DROPPED_BODY, NO_RULE, Judge, walk_request, walk_response

MASK = "[masked]"
QUERY_MASK = quote(MASK, safe="")
"""The mask as it appears in a query string: percent-encoded, so the URL stays valid and decodes to `MASK`."""

_QUOTED = re.compile(r'"[A-Za-z0-9+/=_.~-]{32,64}"')
"""A JSON string that could be a prefixless key (`high-entropy`), as the raw-text hint sees it."""

ECHO_RULE = "echo"
"""Fired-count name of the occurrences masked because the same value was masked elsewhere in the exchange."""

_MEMO_TEXT = 256
_MEMO_ENTRIES = 20_000
"""Bounds of the memo: texts up to this length, this many of them before it starts afresh."""
_T = TypeVar("_T")


@dataclass
class Sanitizer:
    """Applies a policy to whole exchanges; `fired` counts rule firings by rule name."""

    policy: Policy = DEFAULT_POLICY
    key: bytes | None = None
    """HMAC key for `pseudonymize`; None draws a random one, so tokens correlate within one corpus only."""
    key_source: str = "random"
    fired: Counter[str] = field(default_factory=Counter)
    grpc_schema: ProtoSchema | None = None
    """Message types of gRPC methods: their messages are then sanitized by field name, else by wire format."""

    def __post_init__(self) -> None:
        if self.key is None:
            self.key, self.key_source = key_from(None)[0], "random"
        self._pseudonyms = Pseudonymizer(self.key)
        self._remembered: dict[tuple[str, ...], tuple[Any, tuple[str, ...], dict[str, str]]] = {}
        self._echoes = Echoes()
        """Values replaced so far in the exchange being sanitized, followed into their echoes."""

    @classmethod
    def configured(
        cls, *, policy_file: Path | None, defaults: bool, key_file: Path | None, grpc_schema: ProtoSchema | None = None
    ) -> Sanitizer:
        """What `--policy`, `--no-default-sanitize`, `--pseudonym-key-file` and the gRPC schema options ask for
        (raises on bad files)."""
        key, source = key_from(key_file)
        return cls(load_policy(policy_file, defaults=defaults), key=key, key_source=source, grpc_schema=grpc_schema)

    # --- whole exchanges ----------------------------------------------------------------------

    def exchange(self, exchange: Exchange) -> Exchange:
        """The exchange itself when nothing in it needed sanitizing.

        Two passes: the rules, which also collect every value they replaced; then, when some replaced value
        occurs again anywhere in the exchange (an echo), the same walk replacing those occurrences."""
        self._echoes = Echoes()
        path = exchange.request.path
        request = self.request(exchange.request)
        response = self.response(exchange.response, path) if exchange.response else None
        tags = {name: self.scan(value) for name, value in exchange.tags.items()}
        echoes, self._echoes = self._echoes, Echoes()
        if echoes.found and _may_echo(request, response, echoes):
            request = _walk_request(request, echoes, self.grpc_schema)
            response = _walk_response(response, echoes, self.grpc_schema, path) if response else None
            if echoes.replaced:
                self.fired[ECHO_RULE] += echoes.replaced
        if request is exchange.request and response is exchange.response and tags == exchange.tags:
            return exchange
        return replace(exchange, request=request, response=response, tags=tags)

    def request(self, request: Request) -> Request:
        return _walk_request(request, self, self.grpc_schema)

    def response(self, response: Response, path: str = "") -> Response:
        """`path` is the request's: it names a gRPC answer's message type."""
        return _walk_response(response, self, self.grpc_schema, path)

    # --- the judge the walker asks ------------------------------------------------------------

    def named(self, place: NamedPlace, name: str, value: Any) -> Any:
        rule = self.policy.rule_for(place, name)
        if rule is None:
            rule = self._random_credential(place, name, value)
        if rule is None:
            return NO_RULE
        self.fired[rule.name] += 1
        return self._act(rule.action, value)

    def _random_credential(self, place: NamedPlace, name: str, value: Any) -> Rule | None:
        """The `high-entropy` rule when a credential-like name holds a random-looking value, a prefixless key."""
        if not isinstance(value, str) or not self.policy.credential_value_rules or not credential_like(place, name):
            return None
        return next((rule.rule for rule in self.policy.credential_value_rules if rule.fits_whole(value)), None)

    def scan(self, text: str) -> str:
        return self.remembered((text,), lambda: self._scan(text))

    def remembered(self, key: tuple[str, ...], answer: Callable[[], _T]) -> _T:
        """`answer()`, kept with the rules it fired when the text asked about (the key's last part) is short:
        the same header lines, query pairs and values come in every exchange, and the walker only asks this
        for answers that depend on nothing but the key (the policy and the pseudonym key are fixed)."""
        if len(key[-1]) > _MEMO_TEXT:
            return answer()
        known = self._remembered.get(key)
        if known is None:
            outer, self.fired = self.fired, Counter()
            outer_echoes, self._echoes = self._echoes, Echoes()
            try:
                value = answer()
            finally:
                fired, self.fired = self.fired, outer
                replaced, self._echoes = self._echoes.found, outer_echoes
            if len(self._remembered) >= _MEMO_ENTRIES:
                self._remembered.clear()
            known = self._remembered[key] = (value, tuple(fired.elements()), replaced)
        if known[1]:
            self.fired.update(known[1])
        if known[2]:
            self._echoes.update(known[2])  # what the answer replaced is followed in this exchange too
        return known[0]  # type: ignore[no-any-return]  # stored by this same key's `answer`

    def _scan(self, text: str) -> str:
        fired: list[str] = []
        literals = self.policy.literals
        view = TextView(text, literals)
        for value_rule in self.policy.value_rules:
            if value_rule.may_match(view):
                text = value_rule.regex.sub(lambda match, rule=value_rule: self._replace(rule, match, fired), text)
                view = TextView(text, literals)
        self.fired.update(fired)
        return text

    def json_step(self, path: str, key: str | int) -> str:
        return self.policy.json_step(path, key)

    def may_hide_secrets(self, json_text: str) -> bool:
        """Raw-text hints: a literal some JSON rule's key needs, or text some value pattern matches.
        Escapes could disguise either from the hints, so any backslash means a full walk."""
        literals = self.policy.json_key_literals
        if literals is None or "\\" in json_text:
            return True
        view = TextView(json_text, self.policy.literals)
        if view.holds_any(literals):
            return True
        if self.policy.credential_value_rules and _QUOTED.search(json_text) and credential_like("", json_text):
            return True  # a random-looking string value and a credential-like name somewhere: walk to see if together
        return any(rule.may_match(view) and rule.regex.search(json_text) for rule in self.policy.value_rules)

    def scans_number(self, text: str) -> bool:
        return len(text) >= self.policy.scans_numbers

    def dropped_body(self) -> None:
        self.fired[DROPPED_BODY] += 1

    def unread_grpc_message(self) -> None:
        self.fired[UNREAD_RULE] += 1

    def _replace(self, value_rule: PatternRule, match: re.Match[str], fired: list[str]) -> str:
        found = match.group()
        if not value_rule.accepts(found):
            accepted = value_rule.accepted_prefix(found)
            if accepted is None:
                return found
            # a card number followed by other digits (`… 1111 200`): the regex took them too, greedily
            shorter = value_rule.regex.match(accepted)
            assert shorter is not None  # `accepted_prefix` checked that it matches whole
            return self._replace(value_rule, shorter, fired) + found[len(accepted) :]
        fired.append(value_rule.rule.name)
        group = "secret" if "secret" in match.re.groupindex else 0
        start, end = match.span(group)
        offset = match.start()
        new = self._act(value_rule.rule.action, match.group(group))
        return found[: start - offset] + ("" if new is DROP else str(new)) + found[end - offset :]

    def _act(self, action: Action, value: Any) -> Any:
        new = DROP if action == "drop" else MASK if action == "mask" else self._pseudonym(value)
        shown = str(new) if isinstance(new, str | int | float) and not isinstance(new, bool) else MASK
        self._echoes.add(value, shown)  # a dropped value's echoes, or a container's leaves, are masked
        return new

    def _pseudonym(self, value: Any) -> Any:
        """Any JSON value: strings and numbers keep their shape, containers are pseudonymized leaf by leaf."""
        if isinstance(value, str):
            return self._pseudonyms.token(value)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, int):
            return int(self._pseudonyms.token(str(value)))
        if isinstance(value, float):
            return float(self._pseudonyms.token(repr(value)))
        if isinstance(value, list):
            return [self._pseudonym(item) for item in value]
        if isinstance(value, dict):
            return {key: self._pseudonym(item) for key, item in value.items()}
        return value

    # --- corpus header and end record ---------------------------------------------------------

    def describe(self) -> dict[str, str]:
        """For the corpus header, written before anything fired. The key itself is never written."""
        described = {"policy": self.policy.name, "digest": self.policy.digest, "pseudonym_key": self.key_source}
        if self.grpc_schema is not None:
            described["grpc_schema"] = self.grpc_schema.source
        return described

    def summary(self) -> dict[str, object]:
        """For the corpus end record: the description plus the counts."""
        return {**self.describe(), "fired": dict(sorted(self.fired.items()))}




def _walk_request(request: Request, judge: Judge, schema: ProtoSchema | None) -> Request:
    """The walker's request plus its path, which it does not visit: ids and emails hide there too. A gRPC body
    goes to `walk_grpc`, which keeps its framing, instead of the walker's free-text scan."""
    if is_grpc(request.headers) and request.body:
        method = schema.method(request.path) if schema else None
        walked = walk_request(replace(request, body=b""), judge)
        body = walk_grpc(request.body, judge, method.message_classes[0] if method else None, header_value(request.headers, "grpc-encoding"))
        unchanged = walked.headers is request.headers and walked.query == request.query and body is request.body
        walked = request if unchanged else replace(walked, body=body)
    else:
        walked = walk_request(request, judge)
    path = unquote(request.path)
    scanned = judge.scan(path)
    return walked if scanned == path else replace(walked, path=quote(scanned, safe="/;:@&=+$,!~*'()%"))


def _walk_response(response: Response, judge: Judge, schema: ProtoSchema | None, path: str) -> Response:
    if not (is_grpc(response.headers) and response.body):
        return walk_response(response, judge)
    method = schema.method(path) if schema else None
    walked = walk_response(replace(response, body=b""), judge)
    body = walk_grpc(response.body, judge, method.message_classes[1] if method else None, header_value(response.headers, "grpc-encoding"))
    if walked.headers is response.headers and walked.trailers is response.trailers and body is response.body:
        return response
    return replace(walked, body=body)


def _may_echo(request: Request, response: Response | None, echoes: Echoes) -> bool:
    """Whether a replaced value (in one of its forms) occurs in the sanitized exchange: a second walk only then.
    A compressed body cannot be searched as it is stored, nor an escaped one, so those always take the walk."""
    texts = [request.path, request.query, *(value for _, value in request.headers)]
    bodies = [(request.body, request.headers, False)]
    if response is not None:
        texts += [value for _, value in response.headers + response.trailers]
        bodies.append((response.body, response.headers, bool(response.original_encoding)))
    for body, headers, decoded in bodies:
        if body and not decoded and (header_value(headers, "content-encoding") or "identity").lower() != "identity":
            return True
        text = body.decode("utf-8", "surrogateescape")
        if "\\" in text:
            return True  # escapes (JSON's) could disguise a value from a search of the raw text: the walk sees through
        texts.append(text)
    return echoes.occur_in("\n".join(texts))
