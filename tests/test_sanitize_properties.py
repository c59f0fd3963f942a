"""Proof by property: secrets planted anywhere never reach the corpus, and everything else stays byte-identical.

Each example builds one exchange with many secrets planted in every place a
secret can hide: any header (named secret headers, credentials after a scheme
word, cookies, Set-Cookie, tokens inside ordinary header values), the query
string, JSON at any depth (by name, and by value pattern inside any string),
form-encoded fields, multipart parts (by part name, and inside text and JSON
parts), and free text; request bodies are sometimes gzip-compressed. The
policy is a TOML file with one rule per action (drop, mask, pseudonymize) on
top of the safe defaults. Alongside the exchange the strategy builds the
exchange we expect after sanitizing, so the check is exact: the corpus holds
exactly the expected exchange (every non-secret byte identical), and none of
the planted secrets occurs in the raw decompressed corpus bytes.

`make test` runs the bounded form (at least 10,000 placements, counted and
printed); `pytest -m exhaustive` runs many more examples.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replaydiff.corpora import CorpusReader, CorpusWriter, Exchange, Headers, Request, Response
from replaydiff.corpora.container import decompressed_bytes
from replaydiff.recorder.policy import load_policy, looks_random
from replaydiff.recorder.pseudonym import Pseudonymizer
from replaydiff.recorder.sanitize import MASK, QUERY_MASK, Sanitizer
from replaydiff.recorder.walk import DROP

KEY = b"property-test-key"
POLICY_TOML = """
name = "property"
[[rules]]
name = "dropped"
action = "drop"
headers = ["*drop-*"]
cookies = ["drop-*"]
query = ["drop-*"]
form = ["drop-*"]
json = ["$..drop-*"]
[[rules]]
name = "pseudonymized"
action = "pseudonymize"
headers = ["*pseudo-*"]
cookies = ["pseudo-*"]
query = ["pseudo-*"]
form = ["pseudo-*"]
json = ["$..pseudo-*"]
"""
PSEUDONYMS = Pseudonymizer(KEY)
BOUNDARY = "rdBoundary7MA4YWxk"

SAFE_LETTERS = "cdfghjklmnpqrstz"
"""No vowels, so a safe name never spells a secret word; no v or w (`cvv`, `pwd` are secret form fields);
no b or x, so no `bearer` or `xoxa-` prefix."""
SAFE_TEXT = SAFE_LETTERS + "aeiou ,.;:!?"
"""No digits, `@`, `_` or capitals: safe text never looks like a card, email, API key or JWT."""

Case = tuple[Exchange, Exchange, list[str]]
"""An exchange with secrets planted, the exchange expected after sanitizing, and the planted secrets."""

MIN_PLACEMENTS = 10_000
"""Secrets the bounded form plants and checks at least (about 15 per example)."""


# --- secrets and what they become -------------------------------------------------------------

alnum = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=8, max_size=12)
markers = alnum.map(lambda s: f"S3CR3T{s}")
b64url = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=8, max_size=24)
safe_names = st.text(SAFE_LETTERS, min_size=2, max_size=8)
safe_text = st.text(SAFE_TEXT, max_size=16)


def _luhn_complete(digits: str) -> str:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (1 if index % 2 else 2)
        total += value - 9 if value > 9 else value
    return digits + str((10 - total % 10) % 10)


@dataclass(frozen=True)
class Secret:
    text: str
    """How it appears in traffic (`Bearer <token>`, a spaced card number)."""
    secret: str
    """What must never reach the corpus."""
    expected: str
    """What the sanitizer must leave in its place."""


BASE64_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
cards = st.tuples(st.sampled_from("2345"), st.text("0123456789", min_size=14, max_size=14), st.sampled_from(["", " "]))
pattern_secrets = st.one_of(
    st.tuples(b64url, b64url, b64url).map(lambda p: "eyJ" + ".".join(p)).map(lambda t: Secret(t, t, MASK)),
    cards.map(lambda c: _luhn_complete(c[0] + c[1])).flatmap(
        # separators as typed, and URL-encoded as a query or a logged URL carries them
        lambda number: st.sampled_from(["", " ", "%20", "+", "-"]).map(
            lambda sep: Secret(sep.join(number[i : i + 4] for i in range(0, 16, 4)), number, MASK)
        )
    ),
    alnum.map(lambda s: f"sk_live_{s}{s}").map(lambda k: Secret(k, k, MASK)),
    st.text(BASE64_LETTERS, min_size=40, max_size=40)
    .filter(lambda key: looks_random(key, min_bits=4.2))
    .map(lambda key: Secret(key, key, MASK)),  # an AWS secret access key: no prefix, found by its randomness
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", min_size=16, max_size=16).map(lambda s: Secret(f"AKIA{s}", s, MASK)),
    alnum.map(lambda t: Secret(f"Bearer S3CR3T{t}", f"S3CR3T{t}", f"Bearer {MASK}")),
    st.tuples(alnum, st.sampled_from(["corp.com", "mail.example.org"])).map(
        lambda p: f"{p[0].lower()}.s3cr3t@{p[1]}"
    ).map(lambda e: Secret(e, e, PSEUDONYMS.token(e))),
)
"""Secrets found by their value, wherever they are."""


@st.composite
def text_with_secret(draw: st.DrawFn) -> tuple[str, str, Secret]:
    """Free text around a secret, and what it must become."""
    before, after, secret = draw(safe_text), draw(safe_text), draw(pattern_secrets)
    return f"{before} {secret.text} {after}", f"{before} {secret.expected} {after}", secret


ACTIONS = {"drop": None, "pseudo": "pseudonymize", "": "mask"}


@st.composite
def named_secret(draw: st.DrawFn, default_names: list[str], *, principal: bool = False) -> tuple[str, str, Any]:
    """(name, marker, expected value or DROP): a default secret name or one of the policy's own rules.
    Defaults mask, except where a credential names a principal (headers, cookies): pseudonymized."""
    prefix = draw(st.sampled_from(["drop-", "pseudo-", ""]))
    name = prefix + draw(safe_names) if prefix else draw(st.sampled_from(default_names))
    marker = draw(markers)
    pseudonymized = prefix == "pseudo-" or (not prefix and principal)
    expected = DROP if prefix == "drop-" else PSEUDONYMS.token(marker) if pseudonymized else MASK
    return name, marker, expected


@dataclass
class Plan:
    """One exchange under construction and the exchange expected after sanitizing."""

    secrets: list[str] = field(default_factory=list)

    def plant(self, secret: str) -> None:
        self.secrets.append(secret)


# --- headers ------------------------------------------------------------------------------------

SECRET_HEADER_NAMES = ["X-Api-Key", "x-auth-token", "Client-Secret", "X-CSRF-Token", "Session-Id", "PASSWORD"]
SECRET_PARAM_NAMES = ["api_key", "token", "Access_Token", "password", "sig", "client_secret"]
SECRET_JSON_KEYS = ["password", "accessToken", "client_secret", "apiKey", "Credentials", "refresh_token"]


@st.composite
def headers(draw: st.DrawFn, plan: Plan, *, response: bool) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    sent: list[tuple[str, str]] = []
    expected: list[tuple[str, str]] = []
    kinds = st.sampled_from(["safe", "named", "credentials", "cookie", "pattern"])
    for kind in draw(st.lists(kinds, min_size=2, max_size=12)):
        if kind == "safe":
            pair = (f"X-{draw(safe_names)}", draw(safe_text))
            sent.append(pair)
            expected.append(pair)
        elif kind == "named":
            name, marker, value = draw(named_secret(SECRET_HEADER_NAMES, principal=True))
            plan.plant(marker)
            sent.append((name, marker))
            if value is not DROP:
                expected.append((name, value))
        elif kind == "credentials":
            scheme, marker = draw(st.sampled_from(["Bearer", "Basic", "Digest"])), draw(markers)
            plan.plant(marker)
            name = draw(st.sampled_from(["Authorization", "proxy-authorization"]))
            sent.append((name, f"{scheme} {marker}"))
            expected.append((name, f"{scheme} {PSEUDONYMS.token(marker)}"))
        elif kind == "cookie":
            cookies = draw(
                st.lists(named_secret(["sid", "theme", "csrf"], principal=True), min_size=1, max_size=1 if response else 4)
            )
            for _, marker, _ in cookies:
                plan.plant(marker)
            if response:
                (name, marker, value) = cookies[0]
                sent.append(("Set-Cookie", f"{name}={marker}; Path=/; HttpOnly"))
                if value is not DROP:
                    expected.append(("Set-Cookie", f"{name}={value}; Path=/; HttpOnly"))
                continue
            sent.append(("Cookie", "; ".join(f"{name}={marker}" for name, marker, _ in cookies)))
            kept = [f"{name}={value}" for name, _, value in cookies if value is not DROP]
            if kept:
                expected.append(("Cookie", "; ".join(kept)))
        else:
            text, sanitized, secret = draw(text_with_secret())
            plan.plant(secret.secret)
            name = f"X-{draw(safe_names)}"
            sent.append((name, text))
            expected.append((name, sanitized))
    return sent, expected


# --- query strings and form bodies --------------------------------------------------------------


@st.composite
def pairs(draw: st.DrawFn, plan: Plan) -> tuple[str, str]:
    """`a=1&b=2` as sent and as expected; values percent-encoded as browsers do."""
    sent: list[str] = []
    expected: list[str] = []
    for kind in draw(st.lists(st.sampled_from(["safe", "named", "pattern"]), min_size=1, max_size=12)):
        if kind == "safe":
            part = f"{draw(safe_names)}={quote_plus(draw(safe_text))}"
            sent.append(part)
            expected.append(part)
        elif kind == "named":
            name, marker, value = draw(named_secret(SECRET_PARAM_NAMES))
            plan.plant(marker)
            sent.append(f"{name}={marker}")
            if value is not DROP:
                expected.append(f"{name}={QUERY_MASK if value == MASK else quote_plus(value)}")
        else:
            text, sanitized, secret = draw(text_with_secret())
            plan.plant(secret.secret)
            name = draw(safe_names)
            sent.append(f"{name}={quote_plus(text)}")
            expected.append(f"{name}={quote_plus(sanitized)}")
    return "&".join(sent), "&".join(expected)


# --- JSON ---------------------------------------------------------------------------------------

safe_leaves = st.one_of(st.none(), st.booleans(), st.integers(-(10**9), 10**9), safe_text)
safe_trees = st.recursive(
    safe_leaves,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(safe_names, children, max_size=3)),
    max_leaves=12,
)


def _dict_paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        yield path
        for key, child in node.items():
            yield from _dict_paths(child, (*path, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _dict_paths(child, (*path, index))


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        node = node[step]
    return node


@st.composite
def json_documents(draw: st.DrawFn, plan: Plan) -> tuple[str, str]:
    sent = draw(st.dictionaries(safe_names, safe_trees, max_size=4))
    expected = json.loads(json.dumps(sent))
    paths = list(_dict_paths(sent))
    for number in range(draw(st.integers(1, 12))):
        path = draw(st.sampled_from(paths))
        if draw(st.booleans()):
            name, marker, value = draw(named_secret(SECRET_JSON_KEYS))
            key = f"{name}{number}"
            plan.plant(marker)
            secret_value: Any = draw(st.sampled_from([marker, [marker], {"v": marker}]))
            _at(sent, path)[key] = secret_value
            if value is not DROP:
                _at(expected, path)[key] = _json_expected(secret_value, value, marker)
        else:
            text, sanitized, secret = draw(text_with_secret())
            plan.plant(secret.secret)
            _at(sent, path)[f"n{number}"] = text
            _at(expected, path)[f"n{number}"] = sanitized
    return json.dumps(sent, ensure_ascii=False), json.dumps(expected, ensure_ascii=False)


def _json_expected(sent: Any, value: Any, marker: str) -> Any:
    """A masked container becomes the mask; a pseudonymized one keeps its structure, leaf by leaf."""
    if value == MASK:
        return MASK
    return json.loads(json.dumps(sent).replace(marker, value))


# --- bodies -------------------------------------------------------------------------------------


@st.composite
def text_bodies(draw: st.DrawFn, plan: Plan) -> tuple[str, str]:
    chunks = draw(st.lists(text_with_secret(), min_size=1, max_size=6))
    for _, _, secret in chunks:
        plan.plant(secret.secret)
    return "\n".join(text for text, _, _ in chunks), "\n".join(sanitized for _, sanitized, _ in chunks)


def _multipart(parts: list[tuple[str, str, str]]) -> str:
    """(name, content type, content) parts in multipart/form-data framing."""
    lines = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n'
        + (f"Content-Type: {kind}\r\n" if kind else "")
        + f"\r\n{content}\r\n"
        for name, kind, content in parts
    ]
    return "".join(lines) + f"--{BOUNDARY}--\r\n"


@st.composite
def multipart_bodies(draw: st.DrawFn, plan: Plan) -> tuple[str, str]:
    sent: list[tuple[str, str, str]] = []
    expected: list[tuple[str, str, str]] = []
    for kind in draw(st.lists(st.sampled_from(["safe", "named", "text", "json"]), min_size=1, max_size=5)):
        if kind == "safe":
            part = (draw(safe_names), "", draw(safe_text))
            sent.append(part)
            expected.append(part)
        elif kind == "named":
            name, marker, value = draw(named_secret(SECRET_PARAM_NAMES))
            plan.plant(marker)
            sent.append((name, "", marker))
            if value is not DROP:
                expected.append((name, "", value))
        elif kind == "text":
            text, sanitized = draw(text_bodies(plan))
            name = draw(safe_names)
            sent.append((name, "text/plain", text))
            expected.append((name, "text/plain", sanitized))
        else:
            document, sanitized = draw(json_documents(plan))
            name = draw(safe_names)
            sent.append((name, "application/json", document))
            expected.append((name, "application/json", sanitized))
    return _multipart(sent), _multipart(expected)


BODY_KINDS = {
    "json": ("application/json", json_documents),
    "form": ("application/x-www-form-urlencoded", pairs),
    "multipart": (f"multipart/form-data; boundary={BOUNDARY}", multipart_bodies),
    "text": ("text/plain; charset=utf-8", text_bodies),
}


@st.composite
def bodies(draw: st.DrawFn, plan: Plan) -> tuple[list[tuple[str, str]], bytes, bytes]:
    """(content headers, body as sent, body expected): JSON, form, multipart or text."""
    content_type, strategy = BODY_KINDS[draw(st.sampled_from(sorted(BODY_KINDS)))]
    sent, expected = draw(strategy(plan))
    return [("Content-Type", content_type)], sent.encode("utf-8"), expected.encode("utf-8")


# --- whole exchanges ----------------------------------------------------------------------------


@st.composite
def planted_exchanges(draw: st.DrawFn) -> Case:
    plan = Plan()
    request_headers, expected_request_headers = draw(headers(plan, response=False))
    query, expected_query = draw(pairs(plan))
    content_headers, body, expected_body = draw(bodies(plan))
    if draw(st.booleans()):
        content_headers.append(("Content-Encoding", "gzip"))
        body, expected_body = gzip.compress(body, mtime=0), gzip.compress(expected_body, mtime=0)
    response_headers, expected_response_headers = draw(headers(plan, response=True))
    response_content, response_body, expected_response_body = draw(bodies(plan))

    def build(asked: Headers, query: str, body: bytes, answered: Headers, answer: bytes) -> Exchange:
        headers = asked + content_headers
        request = Request("POST", "http", "api.local", 8080, "/things", query, headers=headers, body=body)
        response = Response(200, "OK", headers=answered + response_content, body=answer)
        return Exchange("x1", "s1", 0, request, response)

    sent = build(request_headers, query, body, response_headers, response_body)
    expected = build(
        expected_request_headers, expected_query, expected_body, expected_response_headers, expected_response_body
    )
    return sent, expected, plan.secrets


WORKDIR = Path(tempfile.mkdtemp(prefix="sanitize-properties-"))
POLICY_FILE = WORKDIR / "policy.toml"
POLICY_FILE.write_text(POLICY_TOML)
POLICY = load_policy(POLICY_FILE)


def sanitize_through_the_corpus(exchange: Exchange) -> tuple[bytes, Exchange]:
    """Sanitizes, writes with the real `CorpusWriter`, and returns the raw decompressed bytes and what reads back."""
    sanitizer = Sanitizer(POLICY, key=KEY, key_source="test")
    path = WORKDIR / "planted.jsonl.zst"
    with CorpusWriter(path, source="property test", sanitizer=sanitizer.describe()) as writer:
        writer.write(sanitizer.exchange(exchange))
    (stored,) = CorpusReader(path)
    return decompressed_bytes(path), stored


def decoded(exchange: Exchange) -> Exchange:
    """The request body as its content, so a gzip-encoded body compares (and is searched) by what it says."""
    if ("Content-Encoding", "gzip") not in exchange.request.headers:
        return exchange
    return replace(exchange, request=replace(exchange.request, body=gzip.decompress(exchange.request.body)))


def check(case: Case) -> int:
    """The number of secrets planted and checked."""
    sent, expected, secrets = case
    raw, stored = sanitize_through_the_corpus(sent)
    stored = decoded(stored)
    plain_bodies = stored.request.body + (stored.response.body if stored.response else b"")
    for secret in secrets:
        assert secret.encode() not in raw, f"{secret!r} reached the corpus"
        assert secret.encode() not in plain_bodies, f"{secret!r} reached the corpus inside a compressed body"
    assert stored == decoded(expected)
    return len(secrets)


BOUNDED = settings(
    max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def checked_placements(config: settings) -> int:
    """Runs the property under `config` and counts the secrets it planted and checked: within one test, so the
    count does not depend on which other tests ran, or in which order."""
    placements = 0

    @config
    @given(planted_exchanges())
    def planted_secrets_never_reach_the_corpus(case: Case) -> None:
        nonlocal placements
        placements += check(case)

    planted_secrets_never_reach_the_corpus()
    return placements


@pytest.mark.slow  # about half a minute
def test_planted_secrets_never_reach_the_corpus_and_the_rest_is_untouched(capsys: pytest.CaptureFixture[str]) -> None:
    placements = checked_placements(BOUNDED)
    with capsys.disabled():
        print(f"\n[sanitizer properties] {placements} planted secrets checked")
    assert placements >= MIN_PLACEMENTS


@pytest.mark.exhaustive
def test_exhaustive_planted_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    placements = checked_placements(settings(BOUNDED, max_examples=10_000))
    with capsys.disabled():
        print(f"\n[sanitizer properties, exhaustive] {placements} planted secrets checked")
    assert placements >= 10 * MIN_PLACEMENTS


# --- echoes: secrets the response repeats, in the encodings values travel in ------------------------

ANY_REPLACEMENT = "<any replacement>"
"""Expected where the policy pseudonymizes: the echo is replaced in place by some value (not the secret)."""

ECHO_FORMS = {
    "raw": lambda v: v,
    "url": lambda v: quote(v, safe=""),
    "url-plus": lambda v: quote_plus(v, safe=""),
    "json-escaped": lambda v: json.dumps(v)[1:-1],
    "base64": lambda v: base64.b64encode(v.encode()).decode().rstrip("="),
    "base64url": lambda v: base64.urlsafe_b64encode(v.encode()).decode().rstrip("="),
}
PASSWORD_LETTERS = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789" + '"\\/!&=+% é'
passwords = st.text(PASSWORD_LETTERS, min_size=6, max_size=14).map(
    lambda s: f"Zq{s}9"
)
"""Secrets as users choose them: quotes, slashes, spaces and non-ASCII letters, which every encoding changes."""
tokens = alnum.map(lambda s: f"Zq{s}")


@st.composite
def echoed_exchanges(draw: st.DrawFn) -> tuple[Exchange, list[tuple[str, str, set[str]]]]:
    """A request with secrets under secret names (Basic credentials, a cookie, a form or multipart password, a
    query token) and a response echoing some of them, each in one encoding, inside JSON strings, a text body and
    headers. Returns the exchange and (form of the secret as echoed, encoding, what it may become)."""
    user, password, cookie, token = draw(tokens), draw(passwords), draw(tokens), draw(tokens)
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    prefix = draw(st.sampled_from(["", "pseudo-"]))
    # Credentials (Basic, the session cookie) are pseudonymized by default: their echo becomes some keyed
    # pseudonym (ANY_REPLACEMENT). The password is also inside the Basic credential, so its echo may take that
    # credential's pseudonym as well as its own mask; the query token a known mask or pseudonym.
    replaced = [
        (password, ANY_REPLACEMENT), (basic, ANY_REPLACEMENT), (f"{user}:{password}", ANY_REPLACEMENT),
        (cookie, ANY_REPLACEMENT), (token, PSEUDONYMS.token(token) if prefix else MASK),
    ]  # fmt: skip
    body_kind = draw(st.sampled_from(["form", "multipart", "json"]))
    if body_kind == "form":
        content_type, body = "application/x-www-form-urlencoded", f"user={user}&password={quote_plus(password)}"
    elif body_kind == "multipart":
        content_type = f"multipart/form-data; boundary={BOUNDARY}"
        body = _multipart([("user", "", user), ("password", "", password)])
    else:
        content_type, body = "application/json", json.dumps({"user": user, "password": password})
    request = Request(
        "POST", "http", "api.local", 8080, "/login", f"{prefix}token={token}&page=2",
        headers=[("Authorization", f"Basic {basic}"), ("Cookie", f"sid={cookie}"), ("Content-Type", content_type)],
        body=body.encode(),
    )  # fmt: skip
    echoes: list[tuple[str, str, str]] = []
    strings: list[str] = []
    text_lines: list[str] = []
    headers: list[tuple[str, str]] = []
    for secret in draw(st.lists(st.sampled_from([secret for secret, _ in replaced]), min_size=1, max_size=8)):
        encoding = draw(st.sampled_from(sorted(ECHO_FORMS)))
        form = ECHO_FORMS[encoding](secret)
        before, after = draw(safe_text), draw(safe_text)
        place = draw(st.sampled_from(["json", "text", "header"]))
        if place == "json":
            strings.append(f"{before}<{form}>{after}")
        elif place == "text":
            text_lines.append(f"{before}<{form}>{after}")
        elif "\r" not in form and "\n" not in form:
            headers.append((f"X-Echo-{len(headers)}", f"{before}<{form}>{after}"))
        # when two secrets, or two encodings of one, give the same text, any of their replacements is right
        expected = {
            new if new is ANY_REPLACEMENT else encode(new)
            for other, new in replaced for encode in ECHO_FORMS.values() if encode(other) == form
        }  # fmt: skip
        echoes.append((form, encoding, expected))
    document = {"echo": strings, "text": "\n".join(text_lines), "page": 2}
    response = Response(200, "OK", headers=[("Content-Type", "application/json"), *headers],
                        body=json.dumps(document, ensure_ascii=draw(st.booleans())).encode())  # fmt: skip
    return Exchange("x1", "s1", 0, request, response), echoes


@BOUNDED
@given(echoed_exchanges())
def test_a_secret_masked_in_the_request_is_masked_wherever_the_response_echoes_it(case) -> None:
    exchange, echoes = case
    raw, stored = sanitize_through_the_corpus(exchange)
    assert stored.response is not None
    document = json.loads(stored.response.body)
    for form, encoding, expected in echoes:
        assert form.encode() not in raw and json.dumps(form)[1:-1].encode() not in raw, f"{encoding} echo of {form!r}"
        texts = [*document["echo"], document["text"], *(value for _, value in stored.response.headers)]
        assert any(
            re.search(r"<[^<>]+>", text) if shown is ANY_REPLACEMENT else f"<{shown}>" in text
            for text in texts for shown in expected
        ), f"{encoding} echo of {form!r}"  # fmt: skip
    assert document["page"] == 2 and "page=2" in stored.request.query
