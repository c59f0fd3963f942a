"""Secrets a hostile but realistic recording brings: echoed by the service, URL-encoded, or without a prefix."""

from __future__ import annotations

import json

import pytest

from replaydiff.corpora import Exchange, Request, Response
from replaydiff.recorder.policy import looks_random
from replaydiff.recorder.sanitize import MASK, QUERY_MASK, Sanitizer

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _sanitized(request: Request, response: Response) -> tuple[Exchange, Sanitizer]:
    sanitizer = Sanitizer(key=b"k")
    return sanitizer.exchange(Exchange("x", "s", 0, request, response)), sanitizer


def test_a_who_am_i_page_echoing_credentials_cookies_and_a_multipart_password_keeps_none_of_them() -> None:
    boundary = "b0undary"
    multipart = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="password"\r\n\r\nhunter2!\r\n--{boundary}--\r\n'
    )
    request = Request(
        "POST", "http", "api.local", 80, "/debug/echo", "",
        headers=[("Authorization", "Basic YWxpY2U6aHVudGVyMiE="), ("Cookie", "sid=s3ss10nv4lue"),
                 ("Content-Type", f"multipart/form-data; boundary={boundary}")],
        body=multipart.encode(),
    )  # fmt: skip
    echoed = {
        "headers": {"Authorization": "Basic YWxpY2U6aHVudGVyMiE=", "Cookie": "sid=s3ss10nv4lue"},
        "user": "alice:hunter2!",
        "form": {"password": "hunter2!"},
        "link": "/next?sid=s3ss10nv4lue%20",
    }
    response = Response(200, headers=[("Content-Type", "application/json")], body=json.dumps(echoed).encode())
    stored, sanitizer = _sanitized(request, response)
    assert stored.response is not None
    body = stored.response.body.decode()
    for secret in ("YWxpY2U6aHVudGVyMiE", "s3ss10nv4lue", "hunter2!", "alice:hunter2!"):
        assert secret not in body
    assert json.loads(body)["form"] == {"password": MASK}
    assert sanitizer.fired["echo"] >= 4


def test_a_short_masked_value_is_not_followed_elsewhere() -> None:
    """`dark` recurs by chance: masking every `dark` in the answer would ruin what a diff compares."""
    request = Request("GET", "http", "h", 80, "/", "", headers=[("Cookie", "theme=dark")])
    response = Response(200, body=b"a dark theme")
    stored, _ = _sanitized(request, response)
    [(name, value)] = stored.request.headers
    assert name == "Cookie" and value.startswith("theme=") and "dark" not in value  # masked or pseudonymized
    assert stored.response is not None and stored.response.body == b"a dark theme"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=4111%201111%201111%201111", f"q={QUERY_MASK}"),
        ("4111%201111%201111%201111", QUERY_MASK),  # a bare token, no `=`
        ("next=%2Fpay%3Fcard%3D4111%25201111%25201111%25201111", "next=%2Fpay%3Fcard%3D%5Bmasked%5D"),
        ("q=4111%201111%201111%201112", "q=4111%201111%201111%201112"),  # fails Luhn: not a card
    ],
)
def test_card_numbers_are_found_url_encoded(query: str, expected: str) -> None:
    stored, _ = _sanitized(Request("GET", "http", "h", 80, "/", query), Response(200))
    assert stored.request.query == expected


def test_a_card_number_url_encoded_in_free_text_is_masked() -> None:
    response = Response(200, body=b"GET /pay?card=4111%201111%201111%201111 200")
    stored, _ = _sanitized(Request("GET", "http", "h", 80, "/", ""), response)
    assert stored.response is not None and stored.response.body == f"GET /pay?card={MASK} 200".encode()


def test_a_bare_aws_secret_access_key_in_a_json_array_is_masked() -> None:
    body = json.dumps({"items": [1, AWS_SECRET, "plain"], "note": f"key {AWS_SECRET} here"}).encode()
    stored, sanitizer = _sanitized(Request("GET", "http", "h", 80, "/", ""), Response(200, body=body))
    assert stored.response is not None
    assert json.loads(stored.response.body) == {"items": [1, MASK, "plain"], "note": f"key {MASK} here"}
    assert sanitizer.fired["aws-secret"] == 2


def test_a_random_secret_under_a_credential_like_name_is_masked() -> None:
    secret = "Zk3u9QpLw02nXbV7tRy5mA8cD1eF4gH6"
    body = json.dumps({"signing_key": secret, "description": secret}).encode()
    request = Request("GET", "http", "h", 80, "/", f"access={secret}", headers=[("X-Private", secret)])
    stored, sanitizer = _sanitized(request, Response(200, body=body))
    assert stored.request.query == f"access={QUERY_MASK}"
    assert stored.request.headers == [("X-Private", MASK)]
    assert stored.response is not None
    # `description` is no credential-like name, but the same value was masked elsewhere in the exchange
    assert json.loads(stored.response.body) == {"signing_key": MASK, "description": MASK}
    assert sanitizer.fired["high-entropy"] == 3


@pytest.mark.parametrize(
    "value",
    [
        "AbstractSingletonProxyFactoryBean1234567",  # an identifier: words
        "da39a3ee5e6b4b0d3255bfef95601890afd80709",  # a git commit id (under a credential-like name it would count)
        "images/products/thumbnails/large/item4567",  # a path: words
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1",  # repetitive
        "ThisIsMyVeryLongClassNameForTesting1234A",
    ],
)
def test_the_false_positive_guard_leaves_words_digests_and_paths(value: str) -> None:
    body = json.dumps({"value": value, "list": [value]}).encode()
    stored, _ = _sanitized(Request("GET", "http", "h", 80, "/", ""), Response(200, body=body))
    assert stored.response is not None and json.loads(stored.response.body) == {"value": value, "list": [value]}
    assert not looks_random(value, min_bits=4.2)
