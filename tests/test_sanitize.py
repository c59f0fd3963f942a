"""Default sanitization: secrets never survive, everything else stays byte-identical."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from corpora import Exchange, Request, Response
from recorder.sanitize import (
    DEFAULT_POLICY,
    MASK,
    QUERY_MASK,
    Policy,
    Rule,
    Sanitizer,
    sanitize_headers,
    sanitize_query,
)

# --- examples -----------------------------------------------------------------------------------


def test_credentials_keep_the_scheme_word() -> None:
    headers, fired = sanitize_headers(
        [
            ("Authorization", "Bearer abc.def.ghi"),
            ("proxy-authorization", "Basic dXNlcjpwYXNz"),
            ("AUTHORIZATION", "rawtoken"),
        ]
    )
    assert headers == [
        ("Authorization", f"Bearer {MASK}"),
        ("proxy-authorization", f"Basic {MASK}"),
        ("AUTHORIZATION", MASK),
    ]
    assert fired == ["authorization"] * 3


def test_cookies_keep_names_spacing_and_attributes() -> None:
    headers, _ = sanitize_headers(
        [
            ("Cookie", "sid=s3cr3t; theme=dark;lang=en"),
            ("Set-Cookie", "sid=s3cr3t; Path=/; Expires=Wed, 21 Oct 2026 07:28:00 GMT; HttpOnly"),
            ("Set-Cookie", "nameless"),
        ]
    )
    assert headers == [
        ("Cookie", f"sid={MASK}; theme={MASK};lang={MASK}"),
        ("Set-Cookie", f"sid={MASK}; Path=/; Expires=Wed, 21 Oct 2026 07:28:00 GMT; HttpOnly"),
        ("Set-Cookie", MASK),
    ]


def test_api_key_like_headers_are_masked_and_others_kept() -> None:
    secret_names = ["X-Api-Key", "Api-Key", "X-Auth-Token", "X-CSRF-Token", "X-Session-Id", "Client-Secret", "Password"]
    kept = [("Content-Type", "application/json"), ("X-Request-Id", "42"), ("WWW-Authenticate", 'Bearer realm="x"')]
    headers, fired = sanitize_headers([(name, "hunter2") for name in secret_names] + kept)
    assert headers == [(name, MASK) for name in secret_names] + kept
    assert fired == ["secret-header"] * len(secret_names)


def test_query_changes_only_secret_values() -> None:
    query = "a=1&api_key=s3cr3t&b=%20x+y&Token=t0k&flag&key=&API%5FKEY=k2&access_token=at&page=2"
    sanitized, fired = sanitize_query(query)
    assert sanitized == (
        f"a=1&api_key={QUERY_MASK}&b=%20x+y&Token={QUERY_MASK}&flag&key=&API%5FKEY={QUERY_MASK}"
        f"&access_token={QUERY_MASK}&page=2"
    )
    assert fired == ["secret-query"] * 4


def test_url_headers_lose_their_secret_query_parameters() -> None:
    headers, fired = sanitize_headers(
        [
            ("Referer", "https://shop.example/cart?api_key=s3cr3t&item=7#top"),
            ("Location", "/login?next=%2Fhome"),
        ]
    )
    assert headers == [
        ("Referer", f"https://shop.example/cart?api_key={QUERY_MASK}&item=7#top"),
        ("Location", "/login?next=%2Fhome"),
    ]
    assert fired == ["secret-query"]


def test_empty_values_are_left_alone() -> None:
    assert sanitize_headers([("Cookie", ""), ("X-Api-Key", "")]) == ([("Cookie", ""), ("X-Api-Key", "")], [])


def test_sanitizer_counts_rules_and_describes_its_policy() -> None:
    sanitizer = Sanitizer()
    request = Request("GET", "http", "h", 80, "/", "token=t&q=1", headers=[("Authorization", "Bearer t"), ("A", "b")])
    response = Response(200, headers=[("Set-Cookie", "sid=1"), ("Set-Cookie", "x=2")])
    clean = sanitizer.exchange(Exchange("e1", "s1", 0, request, response))
    unanswered = sanitizer.exchange(Exchange("e2", "s1", 5, request, None))
    assert clean.request.query == f"token={QUERY_MASK}&q=1"
    assert clean.response is not None
    assert clean.response.headers == [("Set-Cookie", f"sid={MASK}"), ("Set-Cookie", f"x={MASK}")]
    assert unanswered.response is None
    assert request.headers[0] == ("Authorization", "Bearer t"), "the input is not modified"
    assert sanitizer.summary() == {
        "policy": "defaults",
        "digest": DEFAULT_POLICY.digest,
        "fired": {"authorization": 2, "secret-query": 2, "set-cookie": 2},
    }


def test_digest_is_stable_and_covers_every_rule_field() -> None:
    assert DEFAULT_POLICY.digest == Policy("other-name", DEFAULT_POLICY.rules).digest
    assert DEFAULT_POLICY.digest.startswith("sha256:")
    changed = Policy("defaults", (*DEFAULT_POLICY.rules, Rule("extra", "query", "q")))
    assert changed.digest != DEFAULT_POLICY.digest


# --- properties ---------------------------------------------------------------------------------

SAFE_NAME_LETTERS = "bcdfghjklmnpqrstvxz"
"""Consonants only (and no `w`, for `pwd`): no rule's name pattern can match a name made of them."""

secrets = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=4, max_size=16).map(lambda s: f"S3CR3T{s}")
"""Non-secret values have no upper case, so a planted secret cannot appear in them by accident."""


def _random_case(name: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda flips: "".join(c.upper() if flip else c for c, flip in zip(name, flips, strict=True))
    )


secret_word_headers = st.tuples(
    st.sampled_from(["", "x-", "x-client-"]),
    st.sampled_from(["api-key", "apikey", "api_key", "token", "auth-token", "secret", "password", "session"]),
    st.sampled_from(["", "-id", "-value"]),
).flatmap(lambda parts: _random_case("".join(parts)))

credential_headers = st.tuples(
    st.sampled_from(["authorization", "proxy-authorization"]).flatmap(_random_case),
    st.tuples(st.sampled_from(["", "Bearer ", "Basic ", "Digest "]), secrets).map("".join),
)
cookie_headers = st.tuples(
    st.just("Cookie"),
    st.lists(st.tuples(st.sampled_from(["sid", "theme", "csrf"]), secrets), min_size=1, max_size=3).map(
        lambda pairs: "; ".join(f"{name}={value}" for name, value in pairs)
    ),
)
set_cookie_headers = st.tuples(
    st.just("Set-Cookie"),
    st.tuples(secrets, st.sampled_from(["", "; Path=/", "; HttpOnly; Secure"])).map(lambda p: f"sid={p[0]}{p[1]}"),
)
secret_headers = st.one_of(
    st.tuples(secret_word_headers, secrets), credential_headers, cookie_headers, set_cookie_headers
)
safe_headers = st.tuples(
    st.text(SAFE_NAME_LETTERS, min_size=1, max_size=10).map(lambda s: f"X-{s}"),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E).filter(lambda c: not c.isupper()), max_size=30),
)


@given(
    st.tuples(st.lists(secret_headers, min_size=1, max_size=4), st.lists(safe_headers, max_size=6))
    .map(lambda parts: parts[0] + parts[1])
    .flatmap(st.permutations)
)
def test_planted_header_secrets_never_survive(headers: list[tuple[str, str]]) -> None:
    sanitized, _ = sanitize_headers(headers)
    assert "S3CR3T" not in repr(sanitized)
    assert [name for name, _ in sanitized] == [name for name, _ in headers]
    for original, result in zip(headers, sanitized, strict=True):
        if "S3CR3T" not in original[1]:
            assert result == original


secret_params = st.tuples(
    st.sampled_from(["api_key", "apikey", "key", "token", "access_token", "secret", "password", "signature", "sig"])
    .flatmap(_random_case)
    .map(lambda name: name.replace("_", "%5F")),
    secrets,
).map(lambda pair: "=".join(pair))
safe_params = st.one_of(
    st.tuples(
        st.text(SAFE_NAME_LETTERS, min_size=1, max_size=8),
        st.text("abcdefghijklmnopqrstuvwxyz0123456789-._~%+,:/", max_size=12),
    ).map(lambda pair: "=".join(pair)),
    st.text(SAFE_NAME_LETTERS, min_size=1, max_size=8),  # flags without a value
)


@given(
    st.tuples(st.lists(secret_params, min_size=1, max_size=4), st.lists(safe_params, max_size=6))
    .map(lambda parts: parts[0] + parts[1])
    .flatmap(st.permutations)
)
def test_planted_query_secrets_never_survive(params: list[str]) -> None:
    sanitized, fired = sanitize_query("&".join(params))
    assert "S3CR3T" not in sanitized
    parts = sanitized.split("&")
    assert len(parts) == len(params)
    for original, result in zip(params, parts, strict=True):
        if "S3CR3T" in original:
            assert result == original.split("=")[0] + "=" + QUERY_MASK
        else:
            assert result == original
    assert len(fired) == sum("S3CR3T" in p for p in params)
