"""Authenticated replay end to end: a real service with Basic auth, bearer JWTs (HS256, RS256), session-cookie
login and API keys, recorded with default sanitization through `replaydiff record`, replayed with each way of
authenticating; without one the verdict is INCONCLUSIVE (exit 3), and no test account's secret reaches a file."""

from __future__ import annotations

import base64
import os
import json
import secrets
import subprocess
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import httpx
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from replaydiff.corpora import CorpusReader, CorpusTruncated, ResultsReader
from replaydiff.corpora.container import decompressed_bytes
from tests.servers import serve
from tests.test_recorder import BIN, Proxy

HS_SECRET = "hs256-sandbox-secret-0123456789abcdef"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRODUCTION_USERS = {"prod-ann": "ann-PRODPASS-1", "prod-bob": "bob-PRODPASS-2"}
TEST_ACCOUNTS = {"test-one": "one-TESTPASS-7", "test-two": "two-TESTPASS-8"}
PRODUCTION_KEYS = {"PRODKEY-aaaa-1111", "PRODKEY-bbbb-2222"}
TEST_KEYS = {"TESTKEY-cccc-3333", "TESTKEY-dddd-4444"}
STATUSES: web.AppKey[Counter[int]] = web.AppKey("statuses", Counter)
SESSION_USES = 2
"""A session cookie answers this many requests, then 401: the replay must log in again."""


def auth_app(*, users: dict[str, str], keys: set[str], session_uses: int | None = None) -> web.Application:
    sessions: dict[str, list[object]] = {}  # sid -> [user, uses left]
    public_rsa = RSA_KEY.public_key()

    def basic_user(request: web.Request) -> str | None:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return None
        return user if scheme == "Basic" and users.get(user) == password else None

    def bearer_claims(request: web.Request, key: object, algorithm: str) -> dict[str, object] | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        try:
            return jwt.decode(token, key, algorithms=[algorithm]) if scheme == "Bearer" else None  # type: ignore[arg-type]
        except jwt.PyJWTError:
            return None

    async def items(request: web.Request) -> web.Response:
        if (user := basic_user(request)) is None:
            return web.json_response({"error": "who are you"}, status=401)
        return web.json_response({"id": int(request.match_info["id"]), "name": "lamp", "seen_by_a_user": bool(user)})

    async def hs_me(request: web.Request) -> web.Response:
        if (claims := bearer_claims(request, HS_SECRET, "HS256")) is None:
            return web.json_response({"error": "bad token"}, status=401)
        return web.json_response({"role": claims.get("role"), "plan": "gold"})

    async def rs_me(request: web.Request) -> web.Response:
        if (claims := bearer_claims(request, public_rsa, "RS256")) is None:
            return web.json_response({"error": "bad token"}, status=401)
        return web.json_response({"role": claims.get("role"), "plan": "silver"})

    async def token(request: web.Request) -> web.Response:
        form = await request.json()
        if users.get(form.get("username")) != form.get("password"):
            return web.json_response({"error": "bad login"}, status=401)
        claims = {"sub": form["username"], "role": "buyer", "iat": int(time.time()), "exp": int(time.time()) + 600}
        return web.json_response({"token": jwt.encode(claims, HS_SECRET, algorithm="HS256")})

    async def login(request: web.Request) -> web.Response:
        form = await request.json()
        if users.get(form.get("username")) != form.get("password"):
            return web.json_response({"error": "bad login"}, status=401)
        sid = secrets.token_hex(16)
        sessions[sid] = [form["username"], session_uses]
        response = web.json_response({"ok": True})
        response.set_cookie("sid", sid, httponly=True)
        return response

    async def cart(request: web.Request) -> web.Response:
        session = sessions.get(request.cookies.get("sid", ""))
        if session is None or session[1] == 0:
            return web.json_response({"error": "log in"}, status=401)
        if session[1] is not None:
            session[1] = int(session[1]) - 1  # type: ignore[call-overload]
        return web.json_response({"items": 2, "total": 30})

    async def orders(request: web.Request) -> web.Response:
        if request.headers.get("X-Api-Key") not in keys:
            return web.json_response({"error": "key"}, status=403)
        return web.json_response({"orders": [1, 2]})

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        request.app[STATUSES][response.status] += 1
        return response

    app = web.Application(middlewares=[count])
    app[STATUSES] = Counter()
    app.router.add_get("/basic/items/{id}", items)
    app.router.add_get("/hs/me", hs_me)
    app.router.add_get("/rs/me", rs_me)
    app.router.add_post("/token", token)
    app.router.add_post("/login", login)
    app.router.add_get("/cart", cart)
    app.router.add_get("/keyed/orders", orders)
    return app


def record_traffic(proxy_url: str) -> None:
    """Production traffic of two users per scheme, through the recorder."""
    for number, (user, password) in enumerate(PRODUCTION_USERS.items()):
        with httpx.Client(base_url=proxy_url, trust_env=False, timeout=10) as client:
            for item in (1, 2):
                assert client.get(f"/basic/items/{item}", auth=(user, password)).status_code == 200
            claims = {"sub": user, "email": f"{user}@corp.example", "role": "buyer", "iat": int(time.time()),
                      "exp": int(time.time()) + 600}  # fmt: skip
            hs = jwt.encode(claims, HS_SECRET, algorithm="HS256")
            rs = jwt.encode(claims, RSA_KEY, algorithm="RS256")
            for _ in range(2):
                assert client.get("/hs/me", headers={"Authorization": f"Bearer {hs}"}).status_code == 200
                assert client.get("/rs/me", headers={"Authorization": f"Bearer {rs}"}).status_code == 200
            assert client.post("/login", json={"username": user, "password": password}).status_code == 200
            for _ in range(3):
                assert client.get("/cart").status_code == 200
            key = sorted(PRODUCTION_KEYS)[number]
            for _ in range(2):
                assert client.get("/keyed/orders", headers={"X-Api-Key": key}).status_code == 200


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A corpus recorded with default settings from a 'production' that knows only production users."""
    directory = tmp_path_factory.mktemp("auth")
    home = directory / "home"
    home.mkdir()
    with serve(auth_app(users=PRODUCTION_USERS, keys=PRODUCTION_KEYS)) as production:
        proxy = Proxy([BIN / "replaydiff", "record", "--upstream", production, "--listen", "0", "-o", "auth.jsonl.zst"],
                      cwd=directory, home=home)  # fmt: skip
        try:
            record_traffic(proxy.wait_for_listening_url())
            assert proxy.stop() == 0, "".join(proxy.lines)
        finally:
            proxy.kill()
    yield directory / "auth.jsonl.zst"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[str]:
    """The targets: a sandbox that knows only the test accounts, keys and the sandbox's signing keys."""
    with serve(auth_app(users=TEST_ACCOUNTS, keys=TEST_KEYS, session_uses=SESSION_USES)) as url:
        yield url


def replay(corpus: Path, target: str, out: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "replaydiff", "run", corpus, "--baseline", target, "--candidate", target, "--speed", "1000",
         "-o", out / "r.jsonl.zst", "--json", out / "r.json", "--html", out / "r.html", "--junit", out / "r.xml",
         *map(str, args)],
        capture_output=True, text=True, timeout=120, cwd=out,
    )  # fmt: skip


def baseline_statuses(results: Path) -> dict[str, list[int | None]]:
    statuses: dict[str, list[int | None]] = {}
    for record in ResultsReader(results):
        if record.target in ("baseline", "baseline2"):
            statuses.setdefault(record.endpoint, []).append(record.response.status if record.response else None)
    return statuses


def assert_no_test_secret_in(*paths: Path) -> None:
    """The test accounts' secrets (and the production ones) appear in no file the run wrote."""
    planted = [*TEST_ACCOUNTS.values(), *PRODUCTION_USERS.values(), *TEST_KEYS, *PRODUCTION_KEYS, HS_SECRET]
    planted += [base64.b64encode(f"{u}:{p}".encode()).decode() for u, p in {**TEST_ACCOUNTS, **PRODUCTION_USERS}.items()]
    for path in paths:
        if not path.exists():
            continue
        raw = decompressed_bytes(path) if path.name.endswith(".zst") else path.read_bytes()
        for secret in planted:
            assert secret.encode() not in raw, f"{secret!r} reached {path.name}"


def test_the_corpus_keeps_principals_apart_without_their_secrets(recorded: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorpusTruncated)
        exchanges = list(CorpusReader(recorded))
    assert len(exchanges) == 2 * (2 + 4 + 1 + 3 + 2)
    basics = {dict(e.request.headers)["Authorization"] for e in exchanges if e.request.path.startswith("/basic")}
    assert len(basics) == 2 and all(value.startswith("Basic ") and "masked" not in value for value in basics)
    assert_no_test_secret_in(recorded)


def test_without_credentials_the_verdict_is_inconclusive_never_same(recorded: Path, sandbox: str, tmp_path: Path) -> None:
    result = replay(recorded, sandbox, tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    printed = " ".join(result.stdout.split())  # as read, whatever the terminal's width
    assert printed.startswith("INCONCLUSIVE") and "SAME" not in printed
    assert "answered 401 on every target where the recording had 200: the recorded credentials were" in printed
    assert "see --header, --identities, --jwt-key" in printed
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["verdict"] == "inconclusive" and report["failed"] is True
    fidelity = {e["endpoint"]: e for e in report["fidelity"]["endpoints"]}
    assert fidelity["GET /basic/items/{id}"]["fidelity"] == 0 and fidelity["GET /basic/items/{id}"]["untested"]
    html = (tmp_path / "r.html").read_text()
    assert "INCONCLUSIVE" in html and "Fidelity to the recording" in html and "not tested: 4 of 4 answered 401" in html
    junit = (tmp_path / "r.xml").read_text()
    assert 'type="inconclusive"' in junit and '<property name="fidelity" value="0.0000"' in junit
    # --fail-on can leave it out: the run passes, the report still says so
    assert replay(recorded, sandbox, tmp_path, "--fail-on", "status,body").returncode == 0


@pytest.mark.parametrize(
    ("endpoints", "how"),
    [
        pytest.param(["/basic/*"], ["--header", "Authorization: Basic " + base64.b64encode(b"test-one:one-TESTPASS-7").decode()], id="basic-header"),
        pytest.param(["/keyed/*"], ["--header", "X-Api-Key: TESTKEY-cccc-3333"], id="api-key-header"),
        pytest.param(["/basic/*"], ["--identities", "basic.toml"], id="basic-identities"),
        pytest.param(["/keyed/*"], ["--identities", "keys.toml"], id="api-key-identities"),
        pytest.param(["/login", "/cart"], ["--identities", "login.toml"], id="session-cookie-login"),
        pytest.param(["/hs/*"], ["--identities", "token.toml"], id="bearer-token-login"),
        pytest.param(["/login", "/cart"], ["--identities", "login.toml", "--processes", "2"], id="login-in-two-processes"),
        pytest.param(["/hs/*"], ["--jwt-key", "hs.key"], id="jwt-hs256"),
        pytest.param(["/rs/*"], ["--jwt-key", "rs.pem"], id="jwt-rs256"),
    ],
)  # fmt: skip
def test_each_way_of_authenticating_gets_every_request_answered(
    recorded: Path, sandbox: str, tmp_path: Path, endpoints: list[str], how: list[str]
) -> None:
    write_credential_files(tmp_path)
    filters = [arg for endpoint in endpoints for arg in ("--filter", endpoint)]
    result = replay(recorded, sandbox, tmp_path, *filters, *how)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SAME" in result.stdout
    statuses = baseline_statuses(tmp_path / "r.jsonl.zst")
    assert statuses and all(s is not None and 200 <= s < 300 for values in statuses.values() for s in values), statuses
    report = json.loads((tmp_path / "r.json").read_text())
    assert all(e["fidelity"] == 1 for e in report["fidelity"]["endpoints"])
    assert_no_test_secret_in(*tmp_path.glob("r.*"))
    for record in ResultsReader(tmp_path / "r.jsonl.zst"):  # a replayed login's new session is a credential too
        assert record.response is not None
        assert all(v.startswith("sid=[masked]") for n, v in record.response.headers if n.lower() == "set-cookie")


def test_an_expired_session_is_logged_in_again(recorded: Path, sandbox: str, tmp_path: Path) -> None:
    """Three recorded cart reads per user, and the sandbox's sessions answer two: the third needs a new login."""
    write_credential_files(tmp_path)
    result = replay(recorded, sandbox, tmp_path, "--filter", "/cart", "--identities", "login.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    records = [r for r in ResultsReader(tmp_path / "r.jsonl.zst") if r.target == "baseline"]
    assert [a.status for r in records for a in r.attempts].count(401) >= 1, "a session did expire"
    assert all(r.response is not None and r.response.status == 200 for r in records)


def write_credential_files(directory: Path) -> None:
    (directory / "hs.key").write_text(HS_SECRET)
    (directory / "rs.pem").write_bytes(
        RSA_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    accounts = list(TEST_ACCOUNTS.items())
    basic = [base64.b64encode(f"{u}:{p}".encode()).decode() for u, p in accounts]
    (directory / "basic.toml").write_text(
        "".join(f'[[account]]\nname = "{u}"\nheader = "Authorization: Basic {b}"\n' for (u, _), b in zip(accounts, basic))
    )
    (directory / "keys.toml").write_text(
        "".join(f'[[account]]\nheader = "X-Api-Key: {key}"\n' for key in sorted(TEST_KEYS))
    )
    logins = "".join(f'[[account]]\nusername = "{u}"\npassword = "{p}"\n' for u, p in accounts)
    (directory / "login.toml").write_text('[login]\npath = "/login"\n' + logins)
    (directory / "token.toml").write_text('[login]\npath = "/token"\ntoken = "$.token"\n' + logins)


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        ({"a.toml": '[[account]]\nname = "x"\n'}, ["--identities", "a.toml"], "account 'x': gives no credentials"),
        ({"a.toml": '[[account]]\nheader = "no colon"\n'}, ["--identities", "a.toml"], "is not 'Name: value'"),
        ({"a.toml": '[[account]]\nheader = "X-Key: ${NOT_SET_ANYWHERE}"\n'}, ["--identities", "a.toml"],
         "environment variable NOT_SET_ANYWHERE is not set"),
        ({"a.toml": '[login]\npath = "/login"\n[[account]]\nusername = "test-one"\npassword = "wrong"\n'},
         ["--identities", "a.toml"], "login of account 'account-1' on baseline (POST"),
        ({"k.pem": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}, ["--jwt-key", "k.pem"],
         "is a public key or certificate"),
        ({"k.pem": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"}, ["--jwt-key", "k.pem"],
         "not a usable private key"),
    ],
)  # fmt: skip
def test_bad_credentials_are_one_line_errors_before_the_replay(
    recorded: Path, sandbox: str, tmp_path: Path, files: dict[str, str], args: list[str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = replay(recorded, sandbox, tmp_path, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "r.jsonl.zst").exists(), "nothing was replayed"


def test_the_locust_engine_refuses_identities_in_one_line(recorded: Path, sandbox: str, tmp_path: Path) -> None:
    write_credential_files(tmp_path)
    result = replay(recorded, sandbox, tmp_path, "--identities", "basic.toml", "--engine", "locust")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "--identities and --jwt-key work with --engine asyncio only" in result.stderr


def test_an_ec_key_signs_es256(tmp_path: Path) -> None:
    from replaydiff.replayer.jwtsign import JwtSigner

    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    signer = JwtSigner.from_file(tmp_path / "ec.pem")
    token = jwt.encode({"sub": "x", "iat": 0, "exp": 60}, "another-key-of-at-least-32-bytes", algorithm="HS256")
    claims = jwt.decode(signer.resign(token, now=1000.0), key.public_key(), algorithms=["ES256"],
                        options={"verify_exp": False})  # fmt: skip
    assert claims == {"sub": "x", "iat": 1000, "exp": 1060}


@pytest.mark.parametrize(
    "how",
    [["--header", "X-Api-Key: TESTKEY-dddd-4444"], ["--identities", "keys.toml"]],
    ids=["header", "identities"],
)
def test_fuzz_sends_generated_requests_as_a_test_account(recorded: Path, tmp_path: Path, how: list[str]) -> None:
    write_credential_files(tmp_path)
    app = auth_app(users=TEST_ACCOUNTS, keys=TEST_KEYS)
    with serve(app) as target:
        result = subprocess.run(
            [BIN / "replaydiff", "fuzz", recorded, "--baseline", target, "--candidate", target, "--examples", "5",
             "--seed", "1", "--endpoint", "GET /keyed/*", "--no-database", "--time-budget", "60s", *how],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert app[STATUSES] and set(app[STATUSES]) == {200}, app[STATUSES]


def nightly(suite: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BIN / "replaydiff", "nightly", suite, "--out", "run"], capture_output=True, text=True,
                          timeout=120, cwd=suite.parent, env={**os.environ, **env})  # fmt: skip


def test_nightly_reads_credentials_from_the_environment_never_from_the_suite(
    recorded: Path, sandbox: str, tmp_path: Path
) -> None:
    write_credential_files(tmp_path)
    suite = tmp_path / "suite.toml"
    table = f'[targets.shop]\nbaseline = "{sandbox}"\ncandidate = "{sandbox}"\n'
    entry = f'[replay]\nspeed = 1000\nfilter = ["/keyed/*"]\n[[entry]]\ncorpus = "{recorded}"\ntarget = "shop"\n'
    suite.write_text(table + 'header = "X-Api-Key: ${SHOP_NIGHTLY_KEY}"\n' + entry)
    passed = nightly(suite, {"SHOP_NIGHTLY_KEY": "TESTKEY-cccc-3333"})
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert_no_test_secret_in(*(tmp_path / "run").rglob("*.*"), *(tmp_path / ".replaydiff").rglob("*.*"))
    # without the variable: one line before anything is replayed
    unset = nightly(suite, {})
    assert unset.returncode == 2 and "environment variable SHOP_NIGHTLY_KEY is not set" in unset.stderr, unset.stderr
    # a secret written into the suite is refused
    suite.write_text(table + 'header = "X-Api-Key: TESTKEY-cccc-3333"\n' + entry)
    literal = nightly(suite, {})
    assert literal.returncode == 2 and "a suite file holds no secret" in literal.stderr, literal.stderr
    # and without credentials the night does not pass: inconclusive, exit 3
    suite.write_text(table + entry)
    untested = nightly(suite, {})
    assert untested.returncode == 3 and "1 inconclusive (shop/auth)" in untested.stdout + untested.stderr
