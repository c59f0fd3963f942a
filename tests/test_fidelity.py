"""diff.fidelity and the pure parts of replayer.credentials: properties over generated records and tokens."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import jwt
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from replaydiff.corpora import Attempt, Exchange, ReplayRecord, Request, Response, ResultsWriter
from replaydiff.diff import analyze
from replaydiff.diff.fidelity import UNTESTED_SHARE, FidelityTally, failure
from replaydiff.recorder.pseudonym import JWT_KEPT_CLAIMS, Pseudonymizer
from replaydiff.replayer.accounts import Account, Identities
from replaydiff.replayer.credentials import Credentials, LiveCredentials, _with_credentials
from tests.test_recorder import BIN

ENDPOINT = "GET /items/{id}"
statuses = st.sampled_from([200, 201, 204, 302, 400, 401, 403, 404, 409, 500, 503, None])


def record(target: str, status: int | None, recorded: int | None, exchange: str = "e") -> ReplayRecord:
    attempt = Attempt(0, 1, 2, status, None if status else "timeout")
    response = Response(status, body=b"{}") if status is not None else None
    return ReplayRecord(exchange, target, ENDPOINT, [attempt], response, recorded_status=recorded)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([200, 201, 302, 404]), statuses, statuses, statuses), min_size=1, max_size=40))
def test_an_endpoint_is_untested_exactly_when_enough_baselines_failed_where_the_recording_succeeded(
    rows: list[tuple[int, int | None, int | None, int | None]],
) -> None:
    tally = FidelityTally()
    for recorded, baseline, baseline2, candidate in rows:
        group = {"baseline": record("baseline", baseline, recorded), "baseline2": record("baseline2", baseline2, recorded),
                 "candidate": record("candidate", candidate, recorded)}  # fmt: skip
        tally.add(ENDPOINT, group)
    (fidelity,) = tally.result().endpoints
    both_failed = sum(
        1 for recorded, b, b2, _ in rows
        if failure(recorded, record("baseline", b, recorded)) and failure(recorded, record("baseline2", b2, recorded))
    )  # fmt: skip
    assert fidelity.exchanges == len(rows)
    assert fidelity.matching == sum(1 for recorded, b, _, _ in rows if b == recorded)
    assert fidelity.untested == (both_failed / len(rows) >= UNTESTED_SHARE)
    assert bool(fidelity.reason) == fidelity.untested
    assert 0 <= fidelity.share <= 1


def test_a_replay_where_every_target_answered_401_is_inconclusive_not_same(tmp_path: Path) -> None:
    """The issue's case, through the `diff` command: 20 recorded 200s, 401 on every target."""
    results = tmp_path / "r.jsonl.zst"
    with ResultsWriter(results, targets={"baseline": "b", "baseline2": "b", "candidate": "c"}) as writer:
        for number in range(20):
            for target in ("baseline", "baseline2", "candidate"):
                writer.write(record(target, 401, 200, f"e{number}"))
    report = analyze([record(t, 401, 200, f"e{n}") for n in range(20) for t in ("baseline", "baseline2", "candidate")])
    assert report.verdict == "inconclusive" and not report.divergences
    assert report.fidelity.reasons() == [
        f"{ENDPOINT}: 20 of 20 answered 401 on every target where the recording had 200: the recorded credentials "
        "were masked or pseudonymized; see --header, --identities, --jwt-key"
    ]
    result = subprocess.run([BIN / "replaydiff", "diff", results], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and result.stdout.startswith("INCONCLUSIVE"), result.stdout + result.stderr
    for fail_on, code in (("status,body", 0), ("status,inconclusive", 3)):
        chosen = subprocess.run([BIN / "replaydiff", "diff", results, "--fail-on", fail_on], capture_output=True, timeout=60)
        assert chosen.returncode == code, fail_on
    # results written before the recorded status was kept: nothing to judge, no fidelity shown, SAME as before
    old = analyze([record(t, 401, None, f"e{n}") for n in range(3) for t in ("baseline", "baseline2", "candidate")])
    assert old.verdict == "same" and not old.fidelity.known


claims_values = st.one_of(st.text(min_size=1, max_size=12), st.text("abcXYZ019", min_size=8, max_size=16), st.integers(0, 10**9), st.booleans(), st.none())


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["sub", "email", "name", "tenant", *sorted(JWT_KEPT_CLAIMS)]), claims_values,
                       min_size=1))  # fmt: skip
def test_a_pseudonymized_jwt_still_decodes_keeps_what_it_may_do_and_hides_who_holds_it(claims: dict[str, object]) -> None:
    try:
        token = jwt.encode(claims, "a-production-secret-of-32-bytes!!", algorithm="HS256")
    except TypeError:
        assume(False)  # PyJWT checks registered claims' types (`iss` a string…): no such token exists
    pseudonyms = Pseudonymizer(b"key")
    hidden = pseudonyms.token(token)
    assert hidden == pseudonyms.token(token), "one principal stays one"
    decoded = jwt.decode(hidden, options={"verify_signature": False})
    assert jwt.get_unverified_header(hidden) == jwt.get_unverified_header(token)
    assert decoded.keys() == claims.keys()
    for name, value in claims.items():
        if name in JWT_KEPT_CLAIMS:
            assert decoded[name] == value
        elif isinstance(value, str) and sum(c.isascii() and c.isalnum() for c in value) >= 8:
            assert decoded[name] != value  # (a short one may map onto itself by chance)
    assert token.split(".")[2] not in hidden


cookie_names = st.text("abcdefgh", min_size=1, max_size=4)
cookie_values = st.text("ABCDEFGH0123", min_size=1, max_size=6)


@given(st.lists(st.tuples(cookie_names, cookie_values), max_size=4), st.lists(st.tuples(cookie_names, cookie_values), min_size=1, max_size=3, unique_by=lambda p: p[0]))
def test_an_accounts_cookies_replace_same_named_recorded_ones_and_keep_the_rest(
    recorded: list[tuple[str, str]], own: list[tuple[str, str]]
) -> None:
    headers = [("Cookie", "; ".join(f"{n}={v}" for n, v in recorded))] if recorded else []
    request = Request("GET", "http", "h", 80, "/", headers=[("Accept", "*/*"), *headers])
    sent = _with_credentials(request, LiveCredentials(cookies=own))
    (cookie,) = [value for name, value in sent.headers if name == "Cookie"]
    pairs = [tuple(part.split("=", 1)) for part in cookie.split("; ")]
    owned = dict(own)
    assert [p for p in pairs if p[0] in owned] == own
    assert [p for p in pairs if p[0] not in owned] == [p for p in recorded if p[0] not in owned]


@given(st.lists(st.sampled_from(["alice", "bob", "carol", "dan", None]), min_size=1, max_size=30))
def test_principals_take_accounts_round_robin_and_keep_them(principals: list[str | None]) -> None:
    accounts = tuple(Account(f"a{n}", headers=[("Authorization", f"Basic test{n}")]) for n in range(2))
    credentials = Credentials(Identities(accounts))
    exchanges = [
        Exchange(str(n), "s", 0, Request("GET", "http", "h", 80, "/", headers=[("Authorization", f"Basic {p}")] if p else []), None)
        for n, p in enumerate(principals)
    ]  # fmt: skip
    credentials.assign(exchanges)
    first_seen = list(dict.fromkeys(p for p in principals if p))
    for exchange, principal in zip(exchanges, principals):
        index = credentials.account_index(exchange)
        assert index == (None if principal is None else first_seen.index(principal) % 2)


def test_basic_credentials_are_one_principal_each_after_pseudonymizing() -> None:
    pseudonyms = Pseudonymizer(b"k")
    ann, bob = (base64.b64encode(f"{u}:pw".encode()).decode() for u in ("ann", "bob"))
    assert pseudonyms.token(ann) == pseudonyms.token(ann) != pseudonyms.token(bob)
    assert json.dumps(pseudonyms.token(ann)).isascii()
