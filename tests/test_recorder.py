"""The recorder end to end: a real upstream, a real proxy subprocess, real requests, then the corpus on disk."""

from __future__ import annotations

import gzip
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

from replaydiff.corpora import CorpusReader, NoCompleteRecord, header_value
from replaydiff.corpora.container import decompressed_bytes
from replaydiff.corpora.ports import free_port
from replaydiff.recorder.sanitize import QUERY_MASK
from tests.waiting import readable_records, wait_until

BIN = Path(sys.executable).parent
ADDON = Path(__file__).resolve().parents[1] / "recorder" / "addon.py"
LISTENING = re.compile(r"^replaydiff: recording (http://127\.0\.0\.1:\d+)")

SECRETS = {
    "Authorization": "Bearer AUTHSECRET1",
    "Proxy-Authorization": "Basic PROXYSECRET2",
    "Cookie": "sid=COOKIESECRET3; theme=COOKIESECRET8",
    "X-Api-Key": "APIKEYSECRET4",
}
QUERY_SECRET = "QUERYSECRET5"
SET_COOKIE_SECRET = "SETCOOKIESECRET6"
ALL_SECRETS = [
    b"AUTHSECRET1",
    b"PROXYSECRET2",
    b"COOKIESECRET3",
    b"COOKIESECRET8",
    b"APIKEYSECRET4",
    b"QUERYSECRET5",
    b"SETCOOKIESECRET6",
]
JSON_BODY = b'{"items": [1, 2, 3], "note": "not a secret"}'
BINARY_BODY = bytes(range(256))


class Upstream(BaseHTTPRequestHandler):
    """The service being recorded. It never echoes request data, so any secret in the corpus came from headers."""

    protocol_version = "HTTP/1.1"
    received: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        Upstream.received.append(dict(self.headers.items()))
        if self.path.startswith("/gzip"):
            headers = [("Content-Encoding", "gzip"), ("Content-Type", "application/json")]
            self._answer(200, gzip.compress(JSON_BODY), headers)
        elif self.path.startswith("/binary"):
            self._answer(200, BINARY_BODY, [("Content-Type", "application/octet-stream")])
        elif self.path.startswith("/big"):
            self._answer(200, os.urandom(256 * 1024), [("Content-Type", "application/octet-stream")])
        elif self.path.startswith("/drop"):
            self.close_connection = True  # no answer at all: the proxy records an error
        else:
            cookies = [("Set-Cookie", f"sid={SET_COOKIE_SECRET}; Path=/; HttpOnly"), ("Set-Cookie", "lang=en")]
            self._answer(200, JSON_BODY, [("X-Dup", "a"), ("X-Dup", "b"), *cookies])

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(201, f"stored {len(body)} bytes".encode(), [("Content-Type", "text/plain")])

    def _answer(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Upstream.received = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Proxy:
    """A recorder subprocess whose stderr is collected line by line on a thread."""

    def __init__(
        self, args: list[str | Path], *, cwd: Path, home: Path, preexec_fn: Callable[[], None] | None = None
    ) -> None:
        self.process = subprocess.Popen(
            [str(arg) for arg in args],
            cwd=cwd,
            env={**os.environ, "HOME": str(home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec_fn,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def wait_for_listening_url(self, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if match := LISTENING.match(line):
                    return match.group(1)
            assert self.process.poll() is None, f"recorder exited early: {''.join(self.lines)}"
            time.sleep(0.05)
        raise AssertionError(f"no listening line within {timeout}s: {''.join(self.lines)}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=15)
        self.join()
        return code

    def join(self) -> None:
        """Waits for the last stderr lines of an exited process."""
        self._reader.join(timeout=5)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)


def wait_until_accepting(port: int, proxy: Proxy, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proxy.process.poll() is None, f"mitmdump exited early: {''.join(proxy.lines)}"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"mitmdump did not listen on {port} within {timeout}s")


def send_traffic(proxy_url: str) -> None:
    """Two clients (two connections, so two sessions) sending everything the corpus must keep."""
    with httpx.Client(base_url=proxy_url, trust_env=False, timeout=10) as client:
        listed = client.get(
            f"/items?api_key={QUERY_SECRET}&page=2&q=a%20b",
            headers=[*SECRETS.items(), ("X-Trace", "1"), ("X-Trace", "2")],
        )
        assert listed.status_code == 200 and listed.content == JSON_BODY
        binary_type = {"Content-Type": "application/octet-stream"}
        created = client.post("/items", content=b"\x00payload\xff", headers=binary_type)
        assert created.status_code == 201
        zipped = client.get("/gzip", headers={"Accept-Encoding": "gzip"})
        assert zipped.content == JSON_BODY
    with httpx.Client(base_url=proxy_url, trust_env=False, timeout=10) as other:
        assert other.get("/binary").content == BINARY_BODY
        assert other.get("/drop").status_code == 502


def check_corpus(path: Path) -> None:
    raw = decompressed_bytes(path)
    for secret in ALL_SECRETS:
        assert secret not in raw, f"{secret!r} reached the corpus"
    reader = CorpusReader(path)
    recorded = {(exchange.request.method, exchange.request.path): exchange for exchange in reader}
    assert reader.complete, "closed cleanly"
    assert reader.end["records"] == len(recorded) == 5
    assert reader.end["sanitizer"]["fired"]["authorization"] == 2
    assert reader.header["sanitizer"]["policy"] == "defaults"

    listed = recorded["GET", "/items"]
    assert listed.request.query == f"api_key={QUERY_MASK}&page=2&q=a%20b"
    request_headers = listed.request.headers
    sent = dict(request_headers)  # credentials pseudonymized: shapes kept, one principal stays one
    assert re.fullmatch(r"Bearer [A-Z]{10}\d", sent["Authorization"])
    assert re.fullmatch(r"Basic [A-Z]{11}\d", sent["Proxy-Authorization"])
    assert re.fullmatch(r"sid=[A-Z]{12}\d; theme=[A-Z]{12}\d", sent["Cookie"])
    assert re.fullmatch(r"[A-Z]{12}\d", sent["X-Api-Key"])
    assert [value for name, value in request_headers if name == "X-Trace"] == ["1", "2"]
    assert listed.response is not None and listed.response.body == JSON_BODY
    response_headers = listed.response.headers
    assert [value for name, value in response_headers if name == "X-Dup"] == ["a", "b"]
    set_cookies = [value for name, value in response_headers if name == "Set-Cookie"]
    assert re.fullmatch(r"sid=[A-Z]{15}\d; Path=/; HttpOnly", set_cookies[0]) and re.fullmatch(r"lang=[a-z]{2}", set_cookies[1])
    assert listed.start_us == 0 and listed.duration_us > 0

    created = recorded["POST", "/items"]
    assert created.request.body == b"\x00payload\xff"
    assert created.response is not None and created.response.body == b"stored 9 bytes"
    assert created.session == listed.session and created.start_us > listed.start_us

    zipped = recorded["GET", "/gzip"].response
    assert zipped is not None and zipped.body == JSON_BODY and zipped.original_encoding == "gzip"
    assert header_value(zipped.headers, "content-encoding") == "gzip", "headers stay as recorded"

    binary = recorded["GET", "/binary"]
    assert binary.response is not None and binary.response.body == BINARY_BODY
    assert binary.session != listed.session

    dropped = recorded["GET", "/drop"]
    assert dropped.response is None and dropped.tags["error"]
    assert dropped.session == binary.session

    assert Upstream.received[0]["Authorization"] == SECRETS["Authorization"], "the traffic itself is untouched"


def test_replaydiff_record_writes_a_sanitized_corpus_and_closes_it_on_sigterm(tmp_path: Path, upstream: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    corpus = tmp_path / "shop.jsonl.zst"
    proxy = Proxy(
        [BIN / "replaydiff", "record", "--upstream", upstream, "--listen", "0", "-o", corpus.name],
        cwd=tmp_path,
        home=home,
    )
    try:
        url = proxy.wait_for_listening_url()
        assert proxy.lines[0] == f"replaydiff: recording {url} -> {upstream}, writing shop.jsonl.zst (Ctrl-C to stop)\n"
        send_traffic(url)
        wait_until(lambda: readable_records(corpus, CorpusReader) == 5, "a quiet recorder to flush its 5 exchanges to disk")
        assert proxy.process.poll() is None, "on disk while it still records"
        assert proxy.stop() == 0, "".join(proxy.lines)
    finally:
        proxy.kill()
    assert proxy.lines[-1] == "replaydiff: wrote 5 exchanges to shop.jsonl.zst\n"
    check_corpus(corpus)
    assert (tmp_path / ".replaydiff" / "mitmproxy").is_dir(), "confdir defaults to the current directory"
    assert not (home / ".mitmproxy").exists(), "the user's mitmproxy directory is never touched"


def test_plain_mitmdump_runs_the_addon(tmp_path: Path, upstream: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    corpus = tmp_path / "dump.jsonl.zst"
    port = free_port()
    options = {
        "replaydiff_output": corpus,
        "replaydiff_source": "mitmdump test",
        "confdir": tmp_path / "conf",
        "listen_host": "127.0.0.1",
        "listen_port": port,
    }
    settings = [arg for name, value in options.items() for arg in ("--set", f"{name}={value}")]
    proxy = Proxy(
        [BIN / "mitmdump", "-q", "-s", ADDON, "--mode", f"reverse:{upstream}", *settings],
        cwd=tmp_path,
        home=home,
    )
    try:
        wait_until_accepting(port, proxy)
        send_traffic(f"http://127.0.0.1:{port}")
        assert proxy.stop() == 0, "".join(proxy.lines)
    finally:
        proxy.kill()
    check_corpus(corpus)
    assert CorpusReader(corpus).header["source"] == "mitmdump test"
    assert not (home / ".mitmproxy").exists()


def test_forward_proxy_mode(tmp_path: Path, upstream: str) -> None:
    corpus = tmp_path / "fwd.jsonl.zst"
    proxy = Proxy(
        [BIN / "replaydiff", "record", "--mode", "forward", "--listen", "0", "-o", corpus, "--confdir", tmp_path],
        cwd=tmp_path,
        home=tmp_path,
    )
    try:
        url = proxy.wait_for_listening_url()
        assert proxy.lines[0].startswith(f"replaydiff: recording {url} (forward proxy), writing")
        with httpx.Client(proxy=url, trust_env=False, timeout=10) as client:
            assert client.get(f"{upstream}/binary", headers={"X-Api-Key": "APIKEYSECRET4"}).content == BINARY_BODY
        assert proxy.stop() == 0, "".join(proxy.lines)
    finally:
        proxy.kill()
    (exchange,) = CorpusReader(corpus)
    assert exchange.request.path == "/binary" and exchange.request.port == int(upstream.rsplit(":", 1)[1])
    assert b"APIKEYSECRET4" not in decompressed_bytes(corpus)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "0"], "--upstream URL is required"),
        (["--upstream", "ftp://x", "--listen", "0"], "must look like http://host:port"),
        (["--upstream", "http://127.0.0.1:1", "--listen", "70000"], "needs a port from 0 to 65535"),
        (["--upstream", "http://127.0.0.1:1", "--listen", "{busy}"], "already in use"),
        (["--upstream", "http://127.0.0.1:1", "--listen", "0", "-o", "missing-dir/x.jsonl.zst"], "does not exist"),
    ],
)
def test_bad_record_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = [arg.replace("{busy}", str(busy.getsockname()[1])) for arg in args]
        output = [] if "-o" in args else ["-o", "x.jsonl.zst"]
        result = subprocess.run(
            [BIN / "replaydiff", "record", *args, *output, "--confdir", tmp_path / "conf"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("replaydiff: error: ")
    assert message in result.stderr
    assert not (tmp_path / "x.jsonl.zst").exists()


def test_a_request_to_a_service_that_is_down_is_recorded_as_an_error(tmp_path: Path) -> None:
    dead_upstream = f"http://127.0.0.1:{free_port()}"
    corpus = tmp_path / "down.jsonl.zst"
    proxy = Proxy(
        [BIN / "replaydiff", "record", "--upstream", dead_upstream, "--listen", "0", "-o", corpus, "--confdir", "."],
        cwd=tmp_path,
        home=tmp_path,
    )
    try:
        url = proxy.wait_for_listening_url()
        with httpx.Client(trust_env=False, timeout=10) as client:
            assert client.get(f"{url}/orders?token=TOKENSECRET7").status_code == 502
        assert proxy.stop() == 0, "".join(proxy.lines)
    finally:
        proxy.kill()
    (exchange,) = CorpusReader(corpus)
    assert exchange.response is None and "connect" in exchange.tags["error"].lower()
    assert exchange.request.query == f"token={QUERY_MASK}"


def _limit_file_size() -> None:
    """In the child: files may grow to 128 KiB (enough for mitmproxy's CA files), then writes fail with EFBIG."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (128 * 1024, 128 * 1024))


def test_a_corpus_that_cannot_be_written_stops_recording_loudly_but_not_the_traffic(
    tmp_path: Path, upstream: str
) -> None:
    proxy = Proxy(
        [BIN / "replaydiff", "record", "--upstream", upstream, "--listen", "0", "-o", "full.jsonl.zst"],
        cwd=tmp_path,
        home=tmp_path,
        preexec_fn=_limit_file_size,
    )
    try:
        url = proxy.wait_for_listening_url()
        with httpx.Client(base_url=url, trust_env=False, timeout=10) as client:
            assert len(client.get("/big").content) == 256 * 1024  # incompressible, bigger than the file may grow
            wait_until(lambda: len(proxy.lines) > 1, "the recorder to report the flush that fails")
            assert client.get("/binary").content == BINARY_BODY, "the service is still reachable"
            assert client.get("/binary").content == BINARY_BODY
        assert proxy.process.poll() is None
        assert proxy.stop() == 2
    finally:
        proxy.kill()
    failure = "replaydiff: error: full.jsonl.zst: cannot write the corpus (File too large); recording stopped"
    assert proxy.lines[1:] == [
        f"{failure}, traffic still flows\n",
        f"{failure}; 2 later exchanges passed through unrecorded\n",
    ]
    with pytest.raises(NoCompleteRecord, match="incomplete frame"):
        CorpusReader(tmp_path / "full.jsonl.zst")  # only its header reached the disk whole: an input error
