"""`replaydiff nightly` as a CI job runs it: the demo shop, real subprocesses, two nights sharing one history.

Night 2's regression is planted without touching the demo: a real reverse
proxy in front of the demo candidate turns one JSON field into a string.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from replaydiff.demo.samples import sample_path
from replaydiff.demo.system import DemoSystem
from replaydiff.nightly.suite import load_suite
from tests.servers import self_signed_certificate, serve
from tests.waiting import readable_records, wait_until

REPLAYDIFF = Path(sys.executable).parent / "replaydiff"

pytestmark = pytest.mark.slow  # real replays in subprocesses, a minute or more for the module
REGRESSION = "GET /api/categories|body|$.categories[*].product_count"
ACCEPTED = "GET /api/products|header|cache-control"
KNOWN = "GET /api/products/{id}|body|$.price"
DEMO_RULES = Path(__file__).parent.parent / "replaydiff" / "demo" / "rules.toml"
PROMO_RULE = """
# One call in ten carries a `promo` on both versions: too few calls in a short night to learn it as noise.
[[rule]]
endpoint = "GET /api/products/{id}"
path = "$.promo"
ignore = true
"""
_NOT_FORWARDED = frozenset({"content-length", "content-encoding", "transfer-encoding", "connection"})


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoSystem]:
    with DemoSystem() as system:
        yield system


def regressing_proxy(upstream: str) -> web.Application:
    """Forwards everything; on GET /api/categories every `product_count` becomes a string, as a bad build would."""

    async def forward(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession(auto_decompress=True) as session, session.request(
            request.method, upstream + request.path_qs, headers=request.headers, data=await request.read(),
            allow_redirects=False,
        ) as answer:  # fmt: skip
            body = await answer.read()
            headers = {k: v for k, v in answer.headers.items() if k.lower() not in _NOT_FORWARDED}
            if request.path == "/api/categories" and answer.status == 200:
                payload = json.loads(body)
                for category in payload["categories"]:
                    category["product_count"] = str(category["product_count"])
                body = json.dumps(payload).encode()
            return web.Response(status=answer.status, headers=headers, body=body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def write_suite(directory: Path, targets: dict[str, tuple[str, str]], entries: list[tuple[str, str]]) -> Path:
    """`entries`: (corpus, target name). Short replays of the shop's read endpoints: the same requests every night."""
    lines = [
        "[replay]",
        "concurrency = 4",
        "limit = 300",
        "no-correlate = true",
        'filter = ["GET /api/products", "GET /api/products/{id}", "GET /api/categories"]',
        "[diff]",
        'rules = "rules.toml"',
        "latency-abs-ms = 100000  # a busy test machine is not a latency regression",
    ]
    for name, (baseline, candidate) in targets.items():
        lines += [f"[targets.{name}]", f'baseline = "{baseline}"', f'candidate = "{candidate}"']
    for corpus, target in entries:
        lines += ["[[entry]]", f"corpus = {json.dumps(corpus)}", f'target = "{target}"']
    (directory / "rules.toml").write_text(DEMO_RULES.read_text() + PROMO_RULE)
    suite = directory / "suite.toml"
    suite.write_text("\n".join(lines) + "\n")
    return suite


def replaydiff(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([REPLAYDIFF, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


def statuses(run: Path) -> dict[str, tuple[str, bool]]:
    report = json.loads((run / "report.json").read_text())
    return {d["fingerprint"]: (d["status"], d["fails"]) for e in report["entries"] for d in e["divergences"]}


def test_nights_stay_red_while_a_divergence_persists_unaccepted(tmp_path: Path, demo: DemoSystem) -> None:
    corpus = str(sample_path("demo-shop"))
    night1 = write_suite(tmp_path, {"shop": (demo.baseline, demo.candidate)}, [(corpus, "shop")])
    first = replaydiff("nightly", night1, "--out", "night1", cwd=tmp_path)
    print(first.stdout, first.stderr)
    assert first.returncode == 1, first.stderr
    assert statuses(tmp_path / "night1") == {ACCEPTED: ("new", True), KNOWN: ("new", True)}
    assert (tmp_path / ".replaydiff" / "history.sqlite").exists()

    # accepted as a finding, by its id in the night's report: every divergence of the finding is accepted
    findings = [f for e in json.loads((tmp_path / "night1" / "report.json").read_text())["entries"]
                for f in e["report"]["findings"] if ACCEPTED in f["fingerprints"]]  # fmt: skip
    assert [f["fingerprints"] for f in findings] == [[ACCEPTED]]
    accepted = replaydiff("accept", findings[0]["id"], "--report", tmp_path / "night1" / "report.json",
                          "--reason", "cache headers on purpose", cwd=tmp_path)  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr
    assert f"accepted {ACCEPTED} (seen in 1 finished runs)" in accepted.stdout
    unknown = replaydiff("accept", "0123456789ab", "--report", tmp_path / "night1" / "report.json", "--reason", "r",
                         cwd=tmp_path)  # fmt: skip
    assert unknown.returncode == 2 and "no finding '0123456789ab'" in unknown.stderr

    with serve(regressing_proxy(demo.candidate)) as proxy:
        night2 = write_suite(tmp_path, {"shop": (demo.baseline, proxy)}, [(corpus, "shop")])
        second = replaydiff("nightly", night2, "--out", "night2", cwd=tmp_path)
    print(second.stdout, second.stderr)
    assert second.returncode == 1, second.stderr
    assert statuses(tmp_path / "night2") == {
        REGRESSION: ("new", True), ACCEPTED: ("accepted", False), KNOWN: ("known", True)
    }  # fmt: skip
    assert second.stdout.splitlines()[-1] in (
        f"replaydiff nightly: 1 entry, 2 failing divergences ({first_}, {then}), 1 new, 1 known, 0 intermittent, "
        "1 accepted — FAIL" for first_, then in ((REGRESSION, KNOWN), (KNOWN, REGRESSION))
    )
    report = json.loads((tmp_path / "night2" / "report.json").read_text())
    since = {d["fingerprint"]: d["nights"] for d in report["entries"][0]["divergences"]}
    assert since == {REGRESSION: 1, ACCEPTED: 2, KNOWN: 2}
    assert "known FAILS" in second.stdout and "2 runs in a row" in second.stdout

    junit = ET.parse(tmp_path / "night2" / "junit.xml").getroot()
    failed = [case.get("name") for case in junit.iter("testcase") if case.find("failure") is not None]
    assert failed == ["GET /api/categories", "GET /api/products/{id}"]  # the new divergence and the known one
    page = (tmp_path / "night2" / "report.html").read_text()
    assert "<svg" in page and "Trends" in page and "cache headers on purpose" in page
    assert (tmp_path / "night2" / "entries" / "shop__demo-shop" / "results.jsonl.zst").exists()

    history = replaydiff("history", "--endpoint", "GET /api/categories", cwd=tmp_path)
    print(history.stdout)
    assert history.returncode == 0, history.stderr
    rows = [line for line in history.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 2 and rows[0].rstrip().endswith("–")
    assert rows[1].rstrip().endswith("+body $.categories[*].product_count (new)")
    assert "GET /api/products" not in history.stdout

    # The old policy on request: the same two divergences, known by now, no longer fail with --fail-on new
    with serve(regressing_proxy(demo.candidate)) as proxy:
        write_suite(tmp_path, {"shop": (demo.baseline, proxy)}, [(corpus, "shop")])
        third = replaydiff("nightly", night2, "--out", "night3", "--fail-on", "new", cwd=tmp_path)
    assert third.returncode == 0, third.stdout + third.stderr
    assert statuses(tmp_path / "night3") == {
        REGRESSION: ("known", False), ACCEPTED: ("accepted", False), KNOWN: ("known", False)
    }  # fmt: skip


def test_a_down_target_fails_its_entry_and_a_corrupt_corpus_is_skipped(tmp_path: Path, demo: DemoSystem) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}"
    (tmp_path / "broken.jsonl.zst").write_bytes(b"not a corpus at all")
    suite = write_suite(
        tmp_path,
        {"aa": (demo.baseline, demo.baseline), "down": (demo.baseline, down)},
        [(str(sample_path("demo-shop")), "aa"), (str(sample_path("demo-shop")), "down"), ("broken.jsonl.zst", "aa")],
    )
    result = replaydiff("nightly", suite, "--out", "run", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    outcomes = {entry["name"]: (entry["outcome"], entry["message"]) for entry in report["entries"]}
    assert outcomes["aa/demo-shop"] == ("ran", "")
    outcome, message = outcomes["down/demo-shop"]
    assert outcome == "error" and f"candidate {down} is unreachable" in message
    assert outcomes["aa/broken"][0] == "skipped" and "broken.jsonl.zst" in outcomes["aa/broken"][1]
    assert result.stdout.splitlines()[-1] == (
        "replaydiff nightly: 3 entries, 0 failing divergences, 0 new, 0 known, 0 intermittent, 0 accepted, "
        "1 failed to run (down/demo-shop), 1 skipped (aa/broken) — FAIL"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_leaves_whole_entries_and_an_unfinished_run(tmp_path: Path, demo: DemoSystem, stop: int) -> None:
    corpus = str(sample_path("demo-shop"))
    suite = write_suite(tmp_path, {"shop": (demo.baseline, demo.baseline)}, [(corpus, "shop")])
    (tmp_path / "long.jsonl.zst").symlink_to(corpus)
    long = "[[entry]]\ncorpus = 'long.jsonl.zst'\ntarget = 'shop'\nreplay = { loop = 50, limit = 100000 }\n"
    suite.write_text(suite.read_text() + long)
    db = tmp_path / ".replaydiff" / "history.sqlite"
    night = subprocess.Popen([REPLAYDIFF, "nightly", suite, "--out", "run"], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    second = tmp_path / "run" / "entries" / "shop__long" / "results.jsonl.zst"
    wait_until(lambda: night.poll() is not None or readable_records(second), "the second, long entry's first records",
               timeout_s=60)
    assert night.poll() is None, "the long entry is still replaying"
    night.send_signal(stop)
    _, stderr = night.communicate(timeout=30)
    assert night.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    with sqlite3.connect(db) as opened:
        assert opened.execute("SELECT finished FROM runs").fetchall() == [(None,)]
        assert _entries(db) == ["shop/demo-shop"]
        assert opened.execute("SELECT COUNT(*) FROM endpoints").fetchone()[0] == 3
    history = replaydiff("history", cwd=tmp_path)
    assert history.stdout.startswith("no finished nightly runs")


def _entries(db: Path) -> list[str]:
    with sqlite3.connect(db) as opened:
        return [name for (name,) in opened.execute("SELECT name FROM entries")]


VALID = (
    '[targets.shop]\nbaseline = "http://127.0.0.1:1"\ncandidate = "http://127.0.0.1:2"\n'
    f"[[entry]]\ncorpus = {json.dumps(str(sample_path('demo-shop')))}\ntarget = \"shop\"\n"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[replay\n" + VALID, "not valid TOML"),
        ("[replay]\nsped = 2\n" + VALID, "[replay]: unknown key `sped`"),
        ("[replay]\nspeed = 0\n" + VALID, "entry 1: `speed`: 0.0 is not in the range x>0"),
        ('[diff]\nfail-on = ["bodies"]\n' + VALID, "unknown kind 'bodies'"),
        (VALID.replace('"http://127.0.0.1:1"', '"ftp://x"'), "entry 1: --baseline 'ftp://x' is not an http(s) URL"),
        (VALID.replace('corpus = "', 'corpus = "*.nothing').replace(str(sample_path("demo-shop")), ""),
         "`corpus` '*.nothing' matches no file"),
        ('accepted = "missing.toml"\n' + VALID, "missing.toml: cannot read the accepted divergences"),
        (VALID.replace('target = "shop"', 'target = "nope"'), "entry 1: `target` 'nope' is not one of the suite"),
        ('[replay]\nca-cert = "suite.toml"\n' + VALID, "not a readable PEM bundle of CA certificates"),
    ],
)  # fmt: skip
def test_a_bad_suite_is_one_line_exit_2(tmp_path: Path, text: str, message: str) -> None:
    suite = tmp_path / "suite.toml"
    suite.write_text(text)
    result = replaydiff("nightly", suite, cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert str(suite) in result.stderr and message in result.stderr, result.stderr
    assert not (tmp_path / ".replaydiff").exists(), "nothing is recorded for a suite that cannot run"


def test_a_bad_fail_on_is_one_line_exit_2(tmp_path: Path) -> None:
    suite = tmp_path / "suite.toml"
    suite.write_text(VALID)
    result = replaydiff("nightly", suite, "--fail-on", "new,accepted", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--fail-on" in result.stderr and "accepted is not a status that can fail a night" in result.stderr


def test_a_mistyped_fingerprint_is_refused(tmp_path: Path) -> None:
    result = replaydiff("accept", "GET /api/x|bodie|$.y", "--reason", "r", cwd=tmp_path)
    assert result.returncode == 2 and "is not a fingerprint" in result.stderr


def test_an_entrys_diff_trusts_https_targets_as_its_replay_does(tmp_path: Path) -> None:
    """`ca-cert` and `insecure` in a suite reach the diff's resends and reflection, not only the replay."""
    certificate, _ = self_signed_certificate(tmp_path)
    suite = tmp_path / "suite.toml"
    suite.write_text(f'[replay]\nca-cert = "{certificate.name}"\n' + VALID.replace("http://", "https://"))
    [entry] = load_suite(suite).entries
    assert entry.job.options.tls.ca_file == entry.diff.tls.ca_file == str(certificate)
