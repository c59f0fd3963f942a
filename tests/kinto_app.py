"""Kinto, a real stateful JSON storage service from PyPI, as a recording and replay target.

What the stateful-replay test and bench (`bench/stateful_replay.py`) share:
- `kinto_command()`: Kinto installed once into a cached venv outside the repository
  (`tests.apps`), reused afterwards; `tests.apps.AppUnavailable` when it cannot be installed;
- `kinto_server()`: one fresh Kinto process (in-memory backend, basic auth) on a free loopback port;
- `drive_clients()`: the traffic of N clients, each on its own connection pool and credentials: a bucket and a
  collection with server-made names, records with server-made ids, conditional GET/PATCH/DELETE with
  `If-None-Match`/`If-Match` (304, 200 and 412 answers), paging through `Next-Page`, `_since` from an ETag;
- `record_and_replay()`: the whole user path: `replaydiff record` in front of one Kinto, the clients through it,
  then `replaydiff replay` to three fresh Kinto processes and `replaydiff diff`, with the figures a user checks.

Why Kinto: a released open-source REST service nobody here wrote, whose state is made by the server (ids,
collection names, timestamps used as ETags, pagination tokens kept server-side), so an A/A replay to fresh
processes only reproduces the recording if the replayer carries what each target answered into later requests.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from replaydiff.corpora import CorpusReader, ResultsReader
from replaydiff.corpora.ports import free_port

from tests.apps import installed
from tests.waiting import wait_until

KINTO_VERSION = "26.5.0"

_INI = """\
[app:main]
use = egg:kinto
kinto.storage_backend = kinto.core.storage.memory
kinto.cache_backend = kinto.core.cache.memory
kinto.permission_backend = kinto.core.permission.memory
# the same secret in every process: a user's principal (basicauth:HMAC) is then the same on every target
kinto.userid_hmac_secret = replaydiff-stateful-replay
multiauth.policies = basicauth
kinto.bucket_create_principals = system.Authenticated

[server:main]
use = egg:waitress#main
host = 127.0.0.1
port = %(http_port)s
threads = 4

[loggers]
keys = root

[handlers]
keys = console

[formatters]
keys = plain

[logger_root]
level = ERROR
handlers = console

[handler_console]
class = StreamHandler
args = (sys.stderr,)
level = NOTSET
formatter = plain

[formatter_plain]
format = %(levelname)s %(message)s
"""


_KINTO_ENV = {**os.environ, "PYTHONHASHSEED": "0"}
"""Kinto builds `Access-Control-Expose-Headers` from a Python set, so its order differs between processes with
random hash seeds: a real difference between any two processes, which an A/A diff reports whenever two of the
three targets happen to agree on it. One seed for all, as for processes of one deployment started alike."""


def kinto_command() -> Path:
    """The `kinto` executable of the cached venv, installed on first use (`tests.apps`, about 10 s)."""
    return installed("kinto", KINTO_VERSION)


@contextlib.contextmanager
def kinto_server(workdir: Path) -> Iterator[str]:
    """A fresh Kinto process with empty in-memory storage; yields its base URL."""
    with kinto_servers(workdir, 1) as (base,):
        yield base


@contextlib.contextmanager
def kinto_servers(workdir: Path, count: int) -> Iterator[list[str]]:
    """`count` fresh Kinto processes, started together (each takes a second or two to import); their URLs."""
    workdir.mkdir(parents=True, exist_ok=True)
    ini = workdir / "kinto.ini"
    ini.write_text(_INI)
    executable = str(kinto_command())
    started: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for _ in range(count):
            port = free_port()
            log_path = workdir / f"kinto-{port}.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [executable, "start", "--ini", str(ini), "--port", str(port)],
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=_KINTO_ENV,
                )  # fmt: skip
            started.append((process, f"http://127.0.0.1:{port}", log_path))
        for process, base, log_path in started:
            wait_until(lambda: process.poll() is not None or _answers(base), f"kinto at {base}")
            if process.poll() is not None:
                raise RuntimeError(f"kinto exited at start: {log_path.read_text()[-2000:]}")
        yield [base for _, base, _ in started]
    finally:
        for process, _, _ in started:
            process.send_signal(signal.SIGTERM)
        for process, _, _ in started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/v1/", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# --- the clients ----------------------------------------------------------------------------------


def _one_client(base: str, number: int, records: int, statuses: Counter[int]) -> None:
    """One user's session: about 5 requests per record and a few listings, as a sync client of Kinto makes."""
    rng = random.Random(number)
    with httpx.Client(base_url=base, auth=(f"client{number}", f"secret-{number}"), timeout=30) as client:

        def call(method: str, url: str, *, expect: tuple[int, ...], **kwargs: object) -> httpx.Response:
            answer = client.request(method, url, **kwargs)  # type: ignore[arg-type]
            statuses[answer.status_code] += 1
            if answer.status_code not in expect:
                raise AssertionError(f"client {number}: {method} {url} answered {answer.status_code}: {answer.text}")
            time.sleep(rng.uniform(0.0, 0.01))  # a little think time, as a real client has
            return answer

        bucket = call("POST", "/v1/buckets", json={"data": {}}, expect=(201,)).json()["data"]["id"]
        collection_url = f"/v1/buckets/{bucket}/collections"
        collection = call("POST", collection_url, json={"data": {}}, expect=(201,)).json()["data"]["id"]
        records_url = f"{collection_url}/{collection}/records"
        ids: list[str] = []
        etags: dict[str, str] = {}
        for index in range(records):
            answer = call("POST", records_url, json={"data": {"title": f"note {index}", "n": index}}, expect=(201,))
            ids.append(answer.json()["data"]["id"])
            etags[ids[-1]] = answer.headers["ETag"]
        for index, record_id in enumerate(ids):
            url = f"{records_url}/{record_id}"
            call("GET", url, headers={"If-None-Match": etags[record_id]}, expect=(304,))
            old = etags[record_id]
            answer = call("PATCH", url, json={"data": {"done": True}}, headers={"If-Match": old}, expect=(200,))
            etags[record_id] = answer.headers["ETag"]
            if index % 3 == 0:
                call("PATCH", url, json={"data": {"done": False}}, headers={"If-Match": old}, expect=(412,))
            call("GET", url, expect=(200,))
            if index % 4 == 1:
                call("DELETE", url, headers={"If-Match": etags[record_id]}, expect=(200,))
        listing = call("GET", records_url, expect=(200,))
        call("GET", records_url, headers={"If-None-Match": listing.headers["ETag"]}, expect=(304,))
        call("GET", records_url, params={"_since": listing.headers["ETag"].strip('"')}, expect=(200,))
        page = call("GET", records_url, params={"_limit": 3, "_sort": "-last_modified"}, expect=(200,))
        while next_page := page.headers.get("Next-Page"):
            link = urlsplit(next_page)  # behind a proxy the link names the service itself: keep path and query
            page = call("GET", f"{link.path}?{link.query}", expect=(200,))


def drive_clients(base: str, *, clients: int, records: int) -> Counter[int]:
    """All clients at once, each in its own thread; the statuses they got."""
    statuses: Counter[int] = Counter()
    failures: list[BaseException] = []

    def run(number: int) -> None:
        try:
            _one_client(base, number, records, statuses)
        except BaseException as exc:  # noqa: BLE001  (reported by the caller)
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return statuses


# --- the user's path: record, replay A/A, diff ----------------------------------------------------


@dataclass
class StatefulFigures:
    exchanges: int = 0
    sessions: int = 0
    same_status: dict[str, int] = field(default_factory=dict)
    """Per target: exchanges answered with the recorded status."""
    divergences: int = 0
    divergent_endpoints: int = 0
    endpoints: int = 0
    """Endpoints the diff compared."""
    verdict: str = ""
    carried: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    """The replay summary's carried values: endpoint → target → `carried`, `not_found`, `where`."""
    mismatches: Counter[str] = field(default_factory=Counter)
    reported_carried: int = 0
    """Values carried into the baseline's requests, as the diff report's fidelity section counts them."""
    """Baseline answers whose status differed from the recording: `METHOD PATH recorded→got`."""

    def share(self, target: str = "baseline") -> float:
        return self.same_status.get(target, 0) / self.exchanges if self.exchanges else 0.0


def _replaydiff(*args: str) -> list[str]:
    return [sys.executable, "-m", "replaydiff.cli", *args]


def record(workdir: Path, upstream: str, *, clients: int, records: int, extra: tuple[str, ...] = ()) -> Path:
    """`replaydiff record` in front of `upstream` with credentials kept, the clients through it; the corpus."""
    corpus = workdir / "kinto.jsonl.zst"
    log_path = workdir / "record.log"
    with open(log_path, "wb") as log:
        recorder = subprocess.Popen(
            _replaydiff("record", "--upstream", upstream, "--listen", "127.0.0.1:0", "-o", str(corpus),
                        "--confdir", str(workdir / "mitmproxy"), "--no-default-sanitize", *extra),
            stderr=log, stdout=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            wait_until(lambda: "recording http" in log_path.read_text() or recorder.poll() is not None, "the recorder")
            found = re.search(r"recording (http://\S+)", log_path.read_text())
            if not found:
                raise RuntimeError(f"recorder did not start: {log_path.read_text()}")
            drive_clients(found.group(1), clients=clients, records=records)
        finally:
            recorder.send_signal(signal.SIGINT)
            recorder.wait(30)
    if recorder.returncode != 0:
        raise RuntimeError(f"recorder exited {recorder.returncode}: {log_path.read_text()}")
    return corpus


TIMESTAMP_RULE = """\
# The one rule of this A/A check. Kinto stamps every write with the millisecond it happened, so two processes
# differ there by a few ms. The second baseline shows that on most endpoints, but on one with a handful of
# exchanges (five DELETEs in the bounded test) it can agree to the millisecond where the candidate does not.
[[rule]]
path = "$..last_modified"
tolerance = 1000
"""


def replay_aa(workdir: Path, corpus: Path, *, extra: tuple[str, ...] = ()) -> StatefulFigures:
    """`replaydiff replay` to three fresh Kinto processes (baseline, baseline2, candidate), then `diff --json`."""
    results = workdir / "kinto.results.jsonl.zst"
    report = workdir / "report.json"
    with kinto_servers(workdir / "targets", 3) as (one, two, three):
        replay = subprocess.run(
            _replaydiff("replay", str(corpus), "--baseline", one, "--baseline2", two, "--candidate", three,
                        "-o", str(results), *extra),
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    (workdir / "replay.log").write_text(replay.stdout + replay.stderr)
    if replay.returncode != 0:
        raise RuntimeError(f"replay exited {replay.returncode}: {replay.stderr[-2000:]}")
    rules = workdir / "rules.toml"
    rules.write_text(TIMESTAMP_RULE)
    diff = subprocess.run(_replaydiff("diff", str(results), "--json", str(report), "--rules", str(rules)),
                          capture_output=True, text=True)  # fmt: skip
    (workdir / "diff.log").write_text(diff.stdout + diff.stderr)
    if diff.returncode not in (0, 1, 3):  # 3: inconclusive, as a session broken by --no-correlate is
        raise RuntimeError(f"diff exited {diff.returncode}: {diff.stderr[-2000:]}")
    return figures(corpus, results, json.loads(report.read_text()))


def figures(corpus: Path, results: Path, report: dict[str, object]) -> StatefulFigures:
    recorded: dict[str, tuple[int | None, str]] = {}
    sessions: set[str] = set()
    for exchange in CorpusReader(corpus):
        status = exchange.response.status if exchange.response else None
        recorded[exchange.id] = (status, f"{exchange.request.method} {exchange.request.path}")
        sessions.add(exchange.session)
    out = StatefulFigures(exchanges=len(recorded), sessions=len(sessions))
    reader = ResultsReader(results)
    for record in reader:
        status = record.response.status if record.response else None
        expected, what = recorded[record.exchange_id]
        if status == expected:
            out.same_status[record.target] = out.same_status.get(record.target, 0) + 1
        elif record.target == "baseline":
            shape = re.sub(r"/[^/]{8,}", "/{id}", what)
            out.mismatches[f"{shape} {expected}→{status}"] += 1
    out.carried = reader.end.get("carried", {})
    divergences = [d for d in report["divergences"] if d["kind"] != "latency"]  # type: ignore[union-attr]
    out.divergences = sum(int(d["count"]) for d in divergences)
    out.divergent_endpoints = len({d["endpoint"] for d in divergences})
    out.verdict = str(report["verdict"])
    fidelity = report.get("fidelity") or {}
    out.reported_carried = sum(int(e.get("values_carried", 0)) for e in fidelity.get("endpoints", []))  # type: ignore[union-attr]
    out.endpoints = len(report["endpoints"])  # type: ignore[arg-type]
    return out
