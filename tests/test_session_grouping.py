"""Sessions are clients, not connections: the grouping rule, and the recorder applying it to real traffic."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from replaydiff.corpora import CorpusReader, Exchange, Request, Response
from replaydiff.corpora.container import decompressed_bytes
from replaydiff.recorder.sessions import SessionGrouper
from tests.kinto_app import wait_until
from tests.servers import serve

KEY = b"k" * 32


def _exchange(
    number: int, start_s: float, headers: list[tuple[str, str]], *, response: Response | None = None
) -> Exchange:
    return Exchange(
        id=f"x{number}",
        session=f"conn{number}",  # every request on a connection of its own, as after a 304 + close
        start_us=round(start_s * 1_000_000),
        request=Request("GET", "http", "svc", 80, f"/r/{number}", headers=headers),
        response=response or Response(200),
        duration_us=1000,
    )


def _sessions(grouper: SessionGrouper, exchanges: list[tuple[Exchange, str]]) -> list[str]:
    return [grouper.assign(exchange, client_address=address).session for exchange, address in exchanges]


def test_one_client_on_many_connections_is_one_session_and_credentials_tell_clients_apart() -> None:
    agent = ("User-Agent", "python-httpx/0.27")
    alice, bob = ("Authorization", "Basic YWxpY2U6MQ=="), ("Authorization", "Basic Ym9iOjI=")
    traffic = [
        (_exchange(0, 0.0, [alice, agent]), "10.0.0.1"),
        (_exchange(1, 0.1, [bob, agent]), "10.0.0.1"),  # same address and agent, other credentials
        (_exchange(2, 0.2, [alice, agent]), "10.0.0.1"),
        (_exchange(3, 0.3, [agent]), "10.0.0.2"),  # anonymous: its address and agent
        (_exchange(4, 0.4, [agent]), "10.0.0.2"),
        (_exchange(5, 0.5, [agent]), "10.0.0.3"),
    ]
    sessions = _sessions(SessionGrouper(KEY), traffic)
    assert sessions == ["client-1", "client-2", "client-1", "client-3", "client-3", "client-4"]
    assert _sessions(SessionGrouper(KEY, by="connection"), traffic) == [f"conn{n}" for n in range(6)]


def test_a_quiet_client_starts_a_new_session_after_the_gap() -> None:
    token = [("Authorization", "Bearer abc")]
    traffic = [(_exchange(n, start, token), "10.0.0.1") for n, start in enumerate([0, 5, 9, 30, 31])]
    assert _sessions(SessionGrouper(KEY, gap_s=10), traffic) == ["client-1"] * 3 + ["client-2"] * 2


def test_the_session_cookie_a_login_answer_sets_keeps_the_login_in_the_session() -> None:
    login = _exchange(0, 0, [], response=Response(200, headers=[("Set-Cookie", "sessionid=s3cr3t; Path=/")]))
    later = _exchange(1, 1, [("Cookie", "theme=dark; sessionid=s3cr3t")])
    other = _exchange(2, 2, [("Cookie", "sessionid=0ther")])
    sessions = _sessions(SessionGrouper(KEY), [(login, "10.0.0.1"), (later, "10.0.0.9"), (other, "10.0.0.1")])
    assert sessions == ["client-1", "client-1", "client-2"]


identities = st.sampled_from(["Basic YTox", "Basic Yjoy", "Bearer tok-3", None])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(identities, st.sampled_from(["10.0.0.1", "10.0.0.2"]), st.floats(0, 20)), max_size=30))
def test_requests_share_a_session_only_when_their_client_does(traffic: list[tuple[str | None, str, float]]) -> None:
    """Same credentials, close in time: one session; different credentials: never one session."""
    gap_s = 10.0
    grouper = SessionGrouper(KEY, gap_s=gap_s)
    start = 0.0
    seen: list[tuple[str | None, str, float, str]] = []
    for number, (credential, address, pause) in enumerate(traffic):
        start += pause
        headers = [("Authorization", credential)] if credential else []
        session = grouper.assign(_exchange(number, start, headers), client_address=address).session
        seen.append((credential, address, start, session))
    by_session: dict[str, set[str]] = {}
    for credential, address, _, session in seen:
        by_session.setdefault(session, set()).add(credential or f"anonymous@{address}")
    assert all(len(clients) == 1 for clients in by_session.values())
    last: dict[str, tuple[float, str]] = {}
    for credential, address, start, session in seen:
        client = credential or f"anonymous@{address}"
        if client in last and start - last[client][0] <= gap_s:
            assert session == last[client][1], "a client active within the gap stays in its session"
        last[client] = (start, session)


def test_the_recorder_groups_a_client_s_connections_into_one_session_without_keeping_its_secret(tmp_path: Path) -> None:
    """Through `replaydiff record` with the default sanitizing (credentials masked): a server closing the
    connection after every answer still gives one session per client, and the two clients stay apart."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=304 if request.path.endswith("/cached") else 200, headers={"Connection": "close"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    corpus = tmp_path / "c.jsonl.zst"
    log_path = tmp_path / "record.log"
    with serve(app) as upstream, open(log_path, "wb") as log:
        recorder = subprocess.Popen(
            [sys.executable, "-m", "replaydiff.cli", "record", "--upstream", upstream, "--listen", "127.0.0.1:0",
             "-o", str(corpus), "--confdir", str(tmp_path / "mitm")],
            stderr=log, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_until(lambda: "recording http" in log_path.read_text() or recorder.poll() is not None, "the recorder")
            found = re.search(r"recording (http://\S+)", log_path.read_text())
            assert found, log_path.read_text()
            for user in ("alice", "bob"):
                with httpx.Client(base_url=found.group(1), auth=(user, f"{user}-password-1")) as client:
                    for path in ("/a", "/b/cached", "/c", "/d/cached"):
                        assert client.get(path).status_code in (200, 304)
        finally:
            recorder.send_signal(signal.SIGINT)
            recorder.wait(30)
    exchanges = list(CorpusReader(corpus))
    assert len(exchanges) == 8
    by_session: dict[str, list[str]] = {}
    for exchange in exchanges:
        by_session.setdefault(exchange.session, []).append(exchange.request.path)
    assert sorted(len(paths) for paths in by_session.values()) == [4, 4]
    raw = decompressed_bytes(corpus)
    assert b"alice-password-1" not in raw and b"YWxpY2U6YWxpY2UtcGFzc3dvcmQtMQ" not in raw


def test_a_bearer_token_handed_out_by_a_login_answer_keeps_the_login_in_the_session() -> None:
    login = _exchange(0, 0, [], response=Response(200, body=b'{"user": {"id": 7}, "access_token": "tok-123456"}'))
    later = _exchange(1, 1, [("Authorization", "Bearer tok-123456")])
    stranger = _exchange(2, 2, [("Authorization", "Bearer tok-999999")])
    sessions = _sessions(SessionGrouper(KEY), [(login, "10.0.0.1"), (later, "10.0.0.1"), (stranger, "10.0.0.1")])
    assert sessions == ["client-1", "client-1", "client-2"]


def test_a_packet_capture_groups_a_client_s_connections_by_its_credentials(tmp_path: Path) -> None:
    """`replaydiff import` of a pcap: connections closed after every answer, two clients on one address."""
    from scapy.utils import wrpcap

    from tests.test_import import run_import
    from tests.test_pcap import T0, Conversation, request, response

    packets = []
    for number, user in enumerate(["alice", "bob", "alice", "bob", "alice"]):
        turn = (request("GET", f"/r/{number}", b"", f"Authorization: Basic {user}-secret-1"), response(304))
        packets += Conversation(client_port=40000 + number).packets([turn], start=T0 + number * 0.1)
    wrpcap(str(tmp_path / "c.pcap"), packets)
    for session_by, expected in (("client", 2), ("connection", 5)):
        result = run_import("c.pcap", "-o", f"{session_by}.jsonl.zst", "--session-by", session_by, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        exchanges = list(CorpusReader(tmp_path / f"{session_by}.jsonl.zst"))
        assert len({e.session for e in exchanges}) == expected
    by_client = {e.request.path: e.session for e in CorpusReader(tmp_path / "client.jsonl.zst")}
    assert by_client["/r/0"] == by_client["/r/2"] == by_client["/r/4"] != by_client["/r/1"] == by_client["/r/3"]
    assert b"alice-secret-1" not in decompressed_bytes(tmp_path / "client.jsonl.zst")
