"""Sanitization by example: each place a secret hides, each action, each value pattern, and policy files.

The exhaustive proof (secrets planted anywhere never reach a corpus) is in
`test_sanitize_properties.py`; these examples pin down the exact output.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replaydiff.corpora import CorpusReader, Exchange, Request, Response
from replaydiff.corpora.container import decompressed_bytes
from replaydiff.recorder.policy import DEFAULT_POLICY, NO_POLICY, PolicyError, load_policy
from replaydiff.recorder.pseudonym import EMAIL_DOMAIN, Pseudonymizer
from replaydiff.recorder.sanitize import MASK, QUERY_MASK, Sanitizer

REPLAYDIFF = Path(sys.executable).with_name("replaydiff")
KEY = b"test-key"


def request(headers: list[tuple[str, str]] | None = None, query: str = "", body: bytes = b"", **kw: str) -> Request:
    return Request("POST", "http", "api.local", 80, kw.get("path", "/"), query, headers=headers or [], body=body)


def sanitized(req: Request, policy_toml: str | None = None, tmp_path: Path | None = None) -> Request:
    policy = DEFAULT_POLICY
    if policy_toml is not None:
        assert tmp_path is not None
        (tmp_path / "p.toml").write_text(policy_toml)
        policy = load_policy(tmp_path / "p.toml")
    return Sanitizer(policy, key=KEY).request(req)


# --- headers, cookies, query --------------------------------------------------------------------


def test_credentials_keep_the_scheme_word_and_are_pseudonymized_so_a_principal_stays_one() -> None:
    headers = [
        ("Authorization", "Bearer abc.def.ghi"),
        ("proxy-authorization", "Basic dXNlcjpwYXNz"),
        ("AUTHORIZATION", "raw"),
    ]
    token = Pseudonymizer(KEY).token
    assert sanitized(request(headers)).headers == [
        ("Authorization", f"Bearer {token('abc.def.ghi')}"),
        ("proxy-authorization", f"Basic {token('dXNlcjpwYXNz')}"),
        ("AUTHORIZATION", token("raw")),
    ]


def test_cookies_keep_names_spacing_and_attributes() -> None:
    response = Response(
        200,
        headers=[
            ("Set-Cookie", "sid=s3cr3t; Path=/; Expires=Wed, 21 Oct 2026 07:28:00 GMT; HttpOnly"),
            ("Set-Cookie", "nameless"),
        ],
    )
    token = Pseudonymizer(KEY).token
    assert Sanitizer(key=KEY).response(response).headers == [
        ("Set-Cookie", f"sid={token('s3cr3t')}; Path=/; Expires=Wed, 21 Oct 2026 07:28:00 GMT; HttpOnly"),
        ("Set-Cookie", token("nameless")),
    ]
    assert sanitized(request([("Cookie", "sid=s3cr3t; theme=dark;lang=en")])).headers == [
        ("Cookie", f"sid={token('s3cr3t')}; theme={token('dark')};lang={token('en')}")
    ]


def test_api_key_like_headers_are_pseudonymized_and_others_kept() -> None:
    secret_names = ["X-Api-Key", "Api-Key", "X-Auth-Token", "X-CSRF-Token", "X-Session-Id", "Client-Secret", "Password"]
    kept = [("Content-Type", "application/json"), ("X-Request-Id", "42"), ("WWW-Authenticate", 'Bearer realm="x"')]
    sanitizer = Sanitizer(key=KEY)
    assert sanitizer.request(request([(n, "hunter2") for n in secret_names] + kept)).headers == [
        (name, Pseudonymizer(KEY).token("hunter2")) for name in secret_names
    ] + kept
    assert sanitizer.fired == {"secret-header": len(secret_names)}


def test_query_keeps_encoding_order_and_flags_and_url_headers_are_walked() -> None:
    req = sanitized(request([("Referer", "https://x/p?token=abc&q=a%20b#frag")], query="a=1&api_key=k%20k&flag&q=a+b"))
    assert req.query == f"a=1&api_key={QUERY_MASK}&flag&q=a+b"
    assert req.headers == [("Referer", f"https://x/p?token={QUERY_MASK}&q=a%20b#frag")]


# --- bodies ---------------------------------------------------------------------------------------


POLICY = """
name = "shop"
[[rules]]
name = "user-emails"
action = "pseudonymize"
json = ["$.users[*].email"]
[[rules]]
name = "internal"
action = "drop"
headers = ["x-internal-*"]
cookies = ["tracking"]
query = ["debug"]
form = ["note"]
json = ["$..ssn", "$.meta['trace id']"]
[[rules]]
name = "accounts"
action = "mask"
regex = ['acct-[0-9]{6}']
patterns = ["ipv4"]
"""


def test_json_paths_with_wildcards_descendants_and_each_action(tmp_path: Path) -> None:
    document = {
        "users": [{"email": "ann@corp.com", "ssn": "123-45-6789"}, {"email": "bob@corp.com"}],
        "profile": {"deep": [{"SSN": 1}, {"password": {"old": "a", "new": "b"}}]},
        "meta": {"trace id": "t1", "ip": "192.168.1.20", "note": "see acct-123456"},
        "count": 3,
    }
    body = json.dumps(document).encode()
    out = json.loads(sanitized(request([("Content-Type", "application/json")], body=body), POLICY, tmp_path).body)
    pseudonyms = Pseudonymizer(KEY)
    assert out == {
        "users": [{"email": pseudonyms.token("ann@corp.com")}, {"email": pseudonyms.token("bob@corp.com")}],
        "profile": {"deep": [{}, {"password": MASK}]},
        "meta": {"ip": MASK, "note": f"see {MASK}"},
        "count": 3,
    }
    assert out["users"][0]["email"].endswith(f"@{EMAIL_DOMAIN}")


def test_a_json_body_with_nothing_secret_keeps_its_bytes() -> None:
    body = b'{ "a" : [1, 2.50, "x"],\n  "b": null }'
    assert sanitized(request([("Content-Type", "application/json")], body=body)).body == body


def test_form_and_multipart_fields(tmp_path: Path) -> None:
    form = sanitized(
        request(
            [("Content-Type", "application/x-www-form-urlencoded")], body=b"user=ann&password=p%40ss&note=hi&pin=1234"
        ),
        POLICY,
        tmp_path,
    )
    assert form.body == f"user=ann&password={QUERY_MASK}&pin={QUERY_MASK}".encode()
    multipart = (
        b'--b0\r\nContent-Disposition: form-data; name="password"\r\n\r\nhunter2\r\n'
        b'--b0\r\nContent-Disposition: form-data; name="avatar"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
        b"\x89PNG\x00acct-123456\r\n"
        b'--b0\r\nContent-Disposition: form-data; name="bio"\r\n\r\nreach me: token eyJhbGciOi.eyJzdWIiOiIx.c2ln\r\n'
        b"--b0--\r\n"
    )
    out = sanitized(request([("Content-Type", 'multipart/form-data; boundary="b0"')], body=multipart), POLICY, tmp_path)
    assert out.body == multipart.replace(b"hunter2", MASK.encode()).replace(
        b"eyJhbGciOi.eyJzdWIiOiIx.c2ln", MASK.encode()
    ), "the image part is opaque, kept byte for byte"


def test_value_patterns_in_free_text_and_headers(tmp_path: Path) -> None:
    text = (
        "card 4111 1111 1111 1111 and 4111111111111112 (not Luhn), key sk_live_abcdefghij0123 "
        "and AKIAABCDEFGHIJKLMNOP, Bearer abcdef123456, mail ann@corp.com, host 10.1.2.3 acct-654321"
    )
    headers = [("X-Note", "Bearer zzzzzzzz"), ("Content-Type", "text/plain")]
    out = sanitized(request(headers, body=text.encode()), POLICY, tmp_path)
    email = Pseudonymizer(KEY).token("ann@corp.com")
    assert out.body.decode() == (
        f"card {MASK} and 4111111111111112 (not Luhn), key {MASK} "
        f"and {MASK}, Bearer {MASK}, mail {email}, host {MASK} {MASK}"
    )
    assert out.headers[0] == ("X-Note", f"Bearer {MASK}")


def test_a_card_number_in_non_ascii_digits_is_masked_too(tmp_path: Path) -> None:
    fullwidth = str.maketrans("0123456789", "０１２３４５６７８９")
    all_wide, mostly_wide = "4111 1111 1111 1111".translate(fullwidth), "4" + "111 1111 1111 1111".translate(fullwidth)
    body = f"card {all_wide}, card {mostly_wide}.".encode()
    out = sanitized(request([("Content-Type", "text/plain")], body=body), POLICY, tmp_path)
    assert out.body.decode() == f"card {MASK}, card {MASK}."


def test_binary_bodies_keep_every_other_byte() -> None:
    body = bytes(range(256)) + b" ann@corp.com " + bytes(range(255, -1, -1))
    out = sanitized(request([("Content-Type", "application/octet-stream")], body=body)).body
    assert b"ann@corp.com" not in out
    assert out.startswith(bytes(range(256))) and out.endswith(bytes(range(255, -1, -1)))


def test_compressed_request_bodies_are_decoded_then_re_encoded_only_when_changed() -> None:
    headers = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
    secret = gzip.compress(b'{"password": "hunter2", "a": 1}')
    out = sanitized(request(headers, body=secret))
    assert json.loads(gzip.decompress(out.body)) == {"password": MASK, "a": 1}
    clean = gzip.compress(b'{"a": 1}')
    assert sanitized(request(headers, body=clean)).body == clean, "the bytes as sent"
    sanitizer = Sanitizer(key=KEY)
    assert sanitizer.request(request(headers, body=b"not gzip at all")).body == b""
    assert sanitizer.fired == {"undecodable-body": 1}


def test_response_bodies_and_paths_and_tags_are_sanitized() -> None:
    response = Response(200, headers=[("Content-Type", "application/json")], body=b'{"access_token": "t0k3n"}')
    exchange = Exchange(
        "e1", "s1", 0, request(path="/users/ann@corp.com/cards"), response, tags={"error": "sent Bearer abcdefgh"}
    )
    out = Sanitizer(key=KEY).exchange(exchange)
    assert out.response is not None and json.loads(out.response.body) == {"access_token": MASK}
    assert out.request.path == f"/users/{Pseudonymizer(KEY).token('ann@corp.com')}/cards"
    assert out.tags == {"error": f"sent Bearer {MASK}"}


# --- pseudonyms -----------------------------------------------------------------------------------


def test_pseudonyms_keep_shape_correlate_and_depend_on_the_key() -> None:
    tokens = Pseudonymizer(KEY)
    assert tokens.token("4111111111111111").isdigit() and len(tokens.token("4111111111111111")) == 16
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    assert [len(part) for part in tokens.token(jwt).split(".")] == [len(part) for part in jwt.split(".")]
    assert tokens.token("ann@corp.com").endswith("@example.invalid")
    assert tokens.token("192.168.1.20").startswith("10.")
    assert tokens.token("ann@corp.com") == Pseudonymizer(KEY).token("ann@corp.com")
    assert tokens.token("ann@corp.com") != Pseudonymizer(b"other").token("ann@corp.com")


@given(st.integers(min_value=1, max_value=10**18))
def test_a_pseudonymized_number_is_a_number_of_the_same_length(number: int) -> None:
    token = Pseudonymizer(KEY).token(str(number))
    assert token.isdigit() and len(str(int(token))) == len(str(number))


# --- policies -------------------------------------------------------------------------------------


def test_policy_files_come_before_defaults_unless_defaults_are_off(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(POLICY)
    policy = load_policy(tmp_path / "p.toml")
    assert policy.name == "shop" and policy.rules[-len(DEFAULT_POLICY.rules) :] == DEFAULT_POLICY.rules
    assert load_policy(tmp_path / "p.toml", defaults=False).rules == policy.rules[: -len(DEFAULT_POLICY.rules)]
    assert len({policy.digest, DEFAULT_POLICY.digest, NO_POLICY.digest}) == 3
    assert load_policy(None, defaults=False) is NO_POLICY
    assert Sanitizer(NO_POLICY, key=KEY).request(request([("Authorization", "Bearer x")])).headers == [
        ("Authorization", "Bearer x")
    ]


BAD_POLICIES = {
    "not toml [": "not valid TOML",
    "color = 1": "unknown key 'color'",
    "defaults = 'yes'": "defaults: must be true or false",
    "[[rules]]\naction = 'hide'\nheaders = ['x']": "rules[0].action: 'hide' is not one of drop, mask, pseudonymize",
    "[[rules]]\nheaders = 'x'\nbody = ['y']": "rules[0].body: unknown key",
    "[[rules]]\naction = 'drop'": "rules[0]: names nothing to match",
    "[[rules]]\njson = ['users.email']": "rules[0].json: JSON path 'users.email' must start with $",
    "[[rules]]\njson = ['$.a[?(@.x)]']": "rules[0].json: JSON path '$.a[?(@.x)]' is not understood",
    "[[rules]]\nregex = ['(']": "rules[0].regex: missing ), unterminated subpattern",
    "[[rules]]\npatterns = ['ssn']": "rules[0].patterns: unknown pattern 'ssn'",
    "[[rules]]\nheaders = [1]": "rules[0].headers: must be a list of non-empty strings",
    "[[rules]]\nheaders = 'x-a'": 'rules[0].headers: must be a list, e.g. headers = ["x-a"]',
}


@pytest.mark.parametrize(("content", "message"), BAD_POLICIES.items())
def test_bad_policy_files_name_the_file_and_key(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(PolicyError, match="^" + str(path).replace(".", r"\.") + ": ") as raised:
        load_policy(path)
    assert message in str(raised.value)


def test_import_with_a_bad_policy_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "x.har").write_text('{"log": {"entries": []}}')
    (tmp_path / "bad.toml").write_text("[[rules]]\naction = 'hide'\nheaders = ['x']")
    result = subprocess.run(
        [REPLAYDIFF, "import", "x.har", "-o", "x.jsonl.zst", "--policy", "bad.toml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "replaydiff: error: bad.toml: rules[0].action: 'hide' is not one of drop, mask, pseudonymize\n"
    )
    assert not (tmp_path / "x.jsonl.zst").exists()


def test_import_with_a_policy_and_key_file_records_digest_and_counts_but_never_the_key(tmp_path: Path) -> None:
    entry = {
        "startedDateTime": "2024-05-01T10:00:00Z",
        "request": {
            "method": "POST",
            "url": "http://shop.local/signup?debug=1",
            "headers": [{"name": "Content-Type", "value": "application/json"}],
            "postData": {"mimeType": "application/json", "text": '{"users": [{"email": "ann@corp.com"}]}'},
        },
        "response": {"status": 201, "headers": [], "content": {"text": "ok"}},
    }
    (tmp_path / "in.har").write_text(json.dumps({"log": {"entries": [entry]}}))
    (tmp_path / "p.toml").write_text(POLICY)
    (tmp_path / "key").write_text("K3YMATERIAL-not-in-corpus")
    result = subprocess.run(
        [REPLAYDIFF, "import", "in.har", "-o", "c.jsonl.zst", "--policy", "p.toml", "--pseudonym-key-file", "key"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    reader = CorpusReader(tmp_path / "c.jsonl.zst")
    (exchange,) = reader
    assert reader.header["sanitizer"] == {
        "policy": "shop",
        "digest": load_policy(tmp_path / "p.toml").digest,
        "pseudonym_key": "file",
    }
    assert reader.end["sanitizer"]["fired"] == {"internal": 1, "user-emails": 1}
    expected = Pseudonymizer(b"K3YMATERIAL-not-in-corpus").token("ann@corp.com")
    assert json.loads(exchange.request.body) == {"users": [{"email": expected}]}
    assert exchange.request.query == ""
    raw = decompressed_bytes(tmp_path / "c.jsonl.zst")
    assert b"K3YMATERIAL" not in raw and b"ann@corp.com" not in raw
