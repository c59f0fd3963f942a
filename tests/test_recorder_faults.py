"""The recorder under faults: SIGKILL, capped bodies, websocket and raw TCP passing through, policies on the proxy."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
import warnings
from pathlib import Path

import aiohttp
import httpx
from aiohttp import web

from replaydiff.corpora import CorpusReader, CorpusTruncated
from replaydiff.corpora.container import decompressed_bytes
from tests.servers import serve
from tests.test_recorder import BIN, Proxy, upstream  # noqa: F401  # `upstream` is a fixture used below


def record(tmp_path: Path, *args: str | Path) -> Proxy:
    return Proxy(
        [BIN / "replaydiff", "record", "--listen", "0", "--confdir", tmp_path / "conf", *args],
        cwd=tmp_path,
        home=tmp_path,
    )


def test_sigkill_loses_at_most_the_last_second(tmp_path: Path, upstream: str) -> None:  # noqa: F811
    proxy = record(tmp_path, "--upstream", upstream, "-o", "killed.jsonl.zst")
    finished: dict[str, float] = {}
    try:
        url = proxy.wait_for_listening_url()
        with httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
            # Keep sending until more than 20 answers are over a second old: a count, not a duration, so a
            # loaded machine makes the test slower, never wrong.
            number = 0
            while sum(time.monotonic() - at > 1.5 for at in finished.values()) <= 25:
                assert client.get(f"/binary?n={number}").status_code == 200
                finished[f"n={number}"] = time.monotonic()
                number += 1
                time.sleep(0.02)
        proxy.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        proxy.process.wait(timeout=10)
    finally:
        proxy.kill()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recorded = {exchange.request.query for exchange in CorpusReader(tmp_path / "killed.jsonl.zst")}
    assert any(issubclass(w.category, CorpusTruncated) for w in caught), "no end marker: the writer was killed"
    older = {query for query, at in finished.items() if killed_at - at > 1.0}
    assert len(older) > 20 and older <= recorded, f"lost {sorted(older - recorded)}"


def test_bodies_above_the_cap_are_stored_truncated_and_tagged(tmp_path: Path, upstream: str) -> None:  # noqa: F811
    proxy = record(tmp_path, "--upstream", upstream, "-o", "cap.jsonl.zst", "--max-body", "1000")
    try:
        url = proxy.wait_for_listening_url()
        with httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
            assert len(client.get("/big").content) == 256 * 1024, "the client gets the whole body"
            assert client.post("/items", content=b"x" * 1500).status_code == 201
        assert proxy.stop() == 0, "".join(proxy.lines)
    finally:
        proxy.kill()
    big, posted = CorpusReader(tmp_path / "cap.jsonl.zst")
    assert big.response is not None and len(big.response.body) == 1000
    assert big.response.body_size == 256 * 1024 and (big.response.body_digest or "").startswith("sha256:")
    assert big.tags == {"truncated": f"response:{256 * 1024}"}
    assert posted.request.body == b"x" * 1000 and posted.tags == {"truncated": "request:1500"}


def test_a_policy_on_the_proxy_and_defaults_turned_off(tmp_path: Path, upstream: str) -> None:  # noqa: F811
    (tmp_path / "p.toml").write_text('[[rules]]\nname = "trace"\naction = "drop"\nheaders = ["x-trace"]\n')
    proxy = record(
        tmp_path, "--upstream", upstream, "-o", "p.jsonl.zst", "--policy", "p.toml", "--no-default-sanitize"
    )
    try:
        url = proxy.wait_for_listening_url()
        with httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
            client.get("/binary", headers={"X-Trace": "t1", "X-Api-Key": "kept-on-purpose"})
        assert proxy.stop() == 0, "".join(proxy.lines)
    finally:
        proxy.kill()
    reader = CorpusReader(tmp_path / "p.jsonl.zst")
    (exchange,) = reader
    names = [name.lower() for name, _ in exchange.request.headers]
    assert "x-trace" not in names and ("X-Api-Key", "kept-on-purpose") in exchange.request.headers
    assert reader.end["sanitizer"]["fired"] == {"trace": 1} and reader.header["sanitizer"]["policy"] == "p"


def test_a_bad_policy_stops_record_before_it_listens(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text("[[rules]]\naction = 'blur'\nheaders = ['x']\n")
    proxy = record(tmp_path, "--upstream", "http://127.0.0.1:1", "-o", "x.jsonl.zst", "--policy", "bad.toml")
    assert proxy.process.wait(timeout=30) == 2
    proxy.join()
    (line,) = proxy.lines
    assert line == "replaydiff: error: bad.toml: rules[0].action: 'blur' is not one of drop, mask, pseudonymize\n"


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    socket_ = web.WebSocketResponse()
    await socket_.prepare(request)
    async for message in socket_:
        await socket_.send_str(f"echo {message.data}")
    return socket_


async def _plain(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def test_websockets_pass_through_and_are_counted_not_recorded(tmp_path: Path) -> None:
    app = web.Application()
    app.add_routes([web.get("/ws", _websocket), web.get("/plain", _plain)])
    with serve(app) as service:
        proxy = record(tmp_path, "--upstream", service, "-o", "ws.jsonl.zst")
        try:
            url = proxy.wait_for_listening_url()

            async def talk() -> list[str]:
                async with aiohttp.ClientSession() as session, session.ws_connect(f"{url}/ws") as ws:
                    answers = []
                    for text in ("a", "b"):
                        await ws.send_str(text)
                        answers.append((await ws.receive()).data)
                    return answers

            assert asyncio.run(talk()) == ["echo a", "echo b"]
            assert httpx.get(f"{url}/plain", trust_env=False).json() == {"ok": True}
            assert proxy.stop() == 0, "".join(proxy.lines)
        finally:
            proxy.kill()
    reader = CorpusReader(tmp_path / "ws.jsonl.zst")
    assert [exchange.request.path for exchange in reader] == ["/plain"]
    assert reader.end["passed_through"] == {"websocket": 1}


def _echo_tcp_server() -> tuple[socket.socket, int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve_one() -> None:
        connection, _ = listener.accept()
        with connection:
            while data := connection.recv(1024):
                connection.sendall(data.upper())

    threading.Thread(target=serve_one, daemon=True).start()
    return listener, listener.getsockname()[1]


def test_raw_tcp_through_the_forward_proxy_passes_and_is_counted(tmp_path: Path) -> None:
    listener, port = _echo_tcp_server()
    proxy = record(tmp_path, "--mode", "forward", "-o", "tcp.jsonl.zst")
    try:
        proxy_url = proxy.wait_for_listening_url()
        proxy_port = int(proxy_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as client:
            client.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            assert client.recv(1024).startswith(b"HTTP/1.1 200")
            client.sendall(b"\x00\x01 not http, password=tcpsecret\n")
            assert client.recv(1024) == b"\x00\x01 NOT HTTP, PASSWORD=TCPSECRET\n"
        assert proxy.stop() == 0, "".join(proxy.lines)
    finally:
        proxy.kill()
        listener.close()
    reader = CorpusReader(tmp_path / "tcp.jsonl.zst")
    assert list(reader) == [] and reader.end["passed_through"] == {"tcp": 1}
    assert b"tcpsecret" not in decompressed_bytes(tmp_path / "tcp.jsonl.zst")
