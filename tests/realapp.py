"""A real application for end-to-end report checks: Datasette from PyPI, two released versions, one small database.

Each version is installed once into a cached venv outside the repository
(`tests.apps`); a failed install raises `AppUnavailable` so a test can skip
with the reason (no registry), and runs otherwise. The traffic is recorded
through `replaydiff record` in reverse-proxy mode, as a user would, then
replayed with `replaydiff run` against old, a second old and new.

Why Datasette: its JSON API was redesigned between 0.64 and 1.0 (table and
row JSON lost most of their keys, rows became objects), a documented change
on many endpoints of one family: exactly what findings must group. 0.65.x
serves the same JSON as 0.64.x for this traffic (only version strings differ).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from replaydiff.corpora.ports import free_port

from tests.apps import installed

OLD = "0.64.8"
NEW = "1.0a41"
REPLAYDIFF = [sys.executable, "-m", "replaydiff.cli"]
ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"replaydiff: recording (http://127\.0\.0\.1:\d+)")
GENRES = ("novel", "poetry", "essay", "drama")
COUNTRIES = ("UK", "FR", "US", "DE")
SUBJECTS = [f"{a}-{b}" for a in ("war", "love", "sea", "city", "night", "winter", "river", "garden", "iron")
            for b in ("tales", "letters", "songs", "studies", "notes", "journeys", "maps", "poems", "trials")]  # fmt: skip
"""81 text primary keys: record names in one path position, which only a learned template recognises."""


def datasette(version: str) -> Path:
    """The `datasette` executable of `version`, installed on first use (`tests.apps`)."""
    return installed("datasette", version)


def library_db(path: Path) -> Path:
    """Authors, books and subjects (text keys), the same rows on every call."""
    rng = random.Random(7)
    path.unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(
            "create table authors (id integer primary key, name text, born integer, country text);"
            "create table books (id integer primary key, title text, author_id integer references authors(id),"
            " year integer, pages integer, genre text, subject text references subjects(slug));"
            "create table subjects (slug text primary key, label text, shelf integer);"
        )
        db.executemany("insert into subjects values (?, ?, ?)",
                       [(slug, slug.replace("-", " ").title(), n % 12) for n, slug in enumerate(SUBJECTS)])
        db.executemany("insert into authors values (?, ?, ?, ?)",
                       [(n, f"Author {n}", 1800 + n, rng.choice(COUNTRIES)) for n in range(1, 61)])
        db.executemany("insert into books values (?, ?, ?, ?, ?, ?, ?)",
                       [(1000 + n, f"Book {n}", rng.randint(1, 60), 1900 + rng.randint(0, 120), rng.randint(80, 900),
                         rng.choice(GENRES), rng.choice(SUBJECTS)) for n in range(1, 401)])  # fmt: skip
        db.commit()
    return path


@contextlib.contextmanager
def serving(version: str, db: Path, *, timeout: float = 60.0) -> Iterator[str]:
    """A Datasette process of `version` on a free loopback port, up (answering `/`) before its URL is yielded."""
    executable = datasette(version)
    port = free_port()
    log = db.parent / f"datasette-{version}-{port}.log"
    with open(log, "w") as output:
        process = subprocess.Popen([str(executable), "serve", str(db), "--host", "127.0.0.1", "--port", str(port)],
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(url + "/-/versions.json", timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"datasette {version} did not start: {log.read_text()[-500:]}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def traffic(count: int, *, seed: int = 12) -> list[str]:
    """`count` request targets (path and query) a reader of the library would send, in a seeded order."""
    rng = random.Random(seed)
    book = lambda: rng.randint(1001, 1400)  # noqa: E731
    makers = [
        (10, lambda: f"/library/books/{book()}.json"),
        (6, lambda: f"/library/books/{book()}"),
        (6, lambda: f"/library/authors/{rng.randint(1, 60)}.json"),
        (6, lambda: f"/library/subjects/{rng.choice(SUBJECTS)}.json"),
        (3, lambda: f"/library/books.json?_size={rng.choice((5, 10, 20))}"),
        (2, lambda: f"/library/books.json?_sort=year&_size={rng.choice((5, 10))}"),
        (2, lambda: f"/library/books.json?genre={rng.choice(GENRES)}&_size=10"),
        (2, lambda: "/library/books.json?_facet=genre&_size=5"),
        (2, lambda: f"/library/authors.json?country={rng.choice(COUNTRIES)}"),
        (1, lambda: "/library/subjects.json?_size=20"),
        (2, lambda: "/library/books.json?_shape=array&_size=5"),
        (2, lambda: "/library/books.csv?_size=20"),
        (2, lambda: f"/library.json?sql=select+id,title+from+books+where+year+>+{rng.randint(1950, 2010)}+limit+5"),
        (1, lambda: "/library.json"),
        (1, lambda: "/.json"),
        (1, lambda: "/-/versions.json"),
        (1, lambda: "/-/plugins.json"),
        (1, lambda: "/-/databases.json"),
        (0.6, lambda: "/-/threads.json"),  # per-process state, a few times: what confirmation resends are for
        (2, lambda: "/"),
        (2, lambda: "/library"),
        (2, lambda: "/library/books"),
        (1, lambda: "/library/authors"),
    ]
    weights = [weight for weight, _ in makers]
    return [rng.choices(makers, weights)[0][1]() for _ in range(count)]


def record(upstream: str, corpus: Path, targets: list[str], *, timeout: float = 60.0) -> Path:
    """Sends `targets` through `replaydiff record` (reverse proxy to `upstream`) and stops it cleanly."""
    process = subprocess.Popen(
        [*REPLAYDIFF, "record", "--upstream", upstream, "--listen", "127.0.0.1:0", "-o", str(corpus),
         "--confdir", str(corpus.parent / "mitmproxy")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=corpus.parent,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        proxy = _listening(process, timeout)
        with httpx.Client(base_url=proxy, timeout=30, trust_env=False) as client:
            for target in targets:
                client.get(target)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"replaydiff record exited {process.returncode}: {process.stderr.read()[-500:]}")
    return corpus


def _listening(process: subprocess.Popen[str], timeout: float) -> str:
    """The proxy's URL from its startup line; reading stops there, so the pipe is drained by the final read."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if match := _LISTENING.search(line):
            return match.group(1)
    raise RuntimeError(f"replaydiff record did not start: {''.join(seen)[-500:]}")


def run(corpus: Path, baseline: str, baseline2: str, candidate: str, out: Path, *extra: str,
        columns: int = 100) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """`replaydiff run` as a user runs it, reports written next to `out` (`.json`, `.html`)."""
    return subprocess.run(
        [*REPLAYDIFF, "run", str(corpus), "--baseline", baseline, "--baseline2", baseline2, "--candidate", candidate,
         "--concurrency", "8", "-o", str(out.with_suffix(".jsonl.zst")), "--json", str(out.with_suffix(".json")),
         "--html", str(out.with_suffix(".html")), *extra],
        capture_output=True, text=True, timeout=600, cwd=out.parent, env={**os.environ, "COLUMNS": str(columns)},
    )  # fmt: skip
