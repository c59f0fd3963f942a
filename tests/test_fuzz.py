"""`replaydiff fuzz` end to end: the real demo shop, a real proxy planting a bug, the real CLI in a subprocess.

The planted bug (`POST /api/cart/quote` answers 500 for an item with quantity
0, where the baseline answers 400) is one the bundled corpus never exercises,
so only generated requests can find it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from replaydiff.corpora import CorpusReader, ResultsReader
from replaydiff.demo.samples import sample_path
from replaydiff.cli import main
from replaydiff.demo.system import DemoSystem

CORPUS = sample_path("demo-shop")
QUOTE = "POST /api/cart/quote"
PLANTED = "status 4xx → 500 (text/plain)"


def is_minimal(body: bytes | str) -> bool:
    """Quantity 0 in the one item, the first recorded product id, and no coupon (null or left out)."""
    document = json.loads(body)
    return document["items"] == [{"product_id": 1, "quantity": 0}] and document.get("coupon", None) is None and set(
        document
    ) <= {"items", "coupon"}


@pytest.fixture(scope="module")
def shop() -> Iterator[dict[str, str]]:
    with DemoSystem() as demo:
        yield {"baseline": demo.baseline, "candidate": demo.candidate}


def fuzz(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "replaydiff.cli", "fuzz", str(CORPUS), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def findings(output: str) -> list[str]:
    """The lines that name a divergence and its minimal request: stable across runs, unlike timestamps."""
    return [line for line in output.splitlines() if line.startswith("✗") or "candidate: curl" in line]


def test_planted_bug_is_found_shrunk_saved_and_replayable(shop: dict[str, str], tmp_path: Path) -> None:
    saved = tmp_path / "regressions.jsonl.zst"
    run = fuzz("--baseline", shop["baseline"], "--candidate", shop["candidate"], "--endpoint", QUOTE,
               "--examples", "100", "--seed", "1", "--save-failures", str(saved), cwd=tmp_path)  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert f"✗ POST /api/cart/quote: {PLANTED}" in run.stdout
    assert f"{shop['baseline']}/api/cart/quote" in run.stdout and f"{shop['candidate']}/api/cart/quote" in run.stdout
    assert (tmp_path / ".replaydiff" / "hypothesis" / "examples").is_dir()
    assert not (tmp_path / ".hypothesis").exists()

    planted = [e for e in CorpusReader(saved) if e.tags["fuzz"] == PLANTED]
    assert len(planted) == 1 and is_minimal(planted[0].request.body)
    minimal = planted[0].request.body.decode()
    assert f"--data-binary '{minimal}'" in run.stdout

    results = tmp_path / "results.jsonl.zst"
    replay = subprocess.run(
        [sys.executable, "-m", "replaydiff.cli", "replay", str(saved), "--baseline", shop["baseline"],
         "--candidate", shop["candidate"], "--speed", "100", "-o", str(results)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stderr
    statuses = {(r.exchange_id, r.target): r.response.status for r in ResultsReader(results) if r.response}
    assert statuses[(planted[0].id, "baseline")] == 400
    assert statuses[(planted[0].id, "candidate")] == 500

    rerun = fuzz("--baseline", shop["baseline"], "--candidate", shop["candidate"], "--endpoint", QUOTE,
                 "--examples", "100", "--seed", "2", cwd=tmp_path)  # fmt: skip
    assert rerun.returncode == 1
    assert f"--data-binary '{minimal}'" in rerun.stdout  # replayed from the example database first


def test_aa_session_finds_nothing(shop: dict[str, str], tmp_path: Path) -> None:
    run = fuzz("--baseline", shop["baseline"], "--candidate", shop["baseline"], "--examples", "40", "--seed", "5",
               "--no-database", cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "fuzzed 12 endpoint(s): " in run.stdout and "no divergence" in run.stdout


def test_same_seed_same_session(shop: dict[str, str], tmp_path: Path) -> None:
    args = ("--baseline", shop["baseline"], "--candidate", shop["candidate"], "--endpoint", QUOTE, "--endpoint",
            "GET /api/products/{id}", "--examples", "30", "--seed", "42", "--no-database")  # fmt: skip
    first, second = fuzz(*args, cwd=tmp_path), fuzz(*args, cwd=tmp_path)
    assert first.returncode == second.returncode == 1
    assert findings(first.stdout) == findings(second.stdout) != []
    count = [line.split(" examples")[0] for line in first.stdout.splitlines() if line.startswith("fuzzed")]
    assert count and count[0] in second.stdout


def test_pytest_helper_runs_a_session_per_endpoint(shop: dict[str, str], tmp_path: Path) -> None:
    module = tmp_path / "test_shop_fuzz.py"
    module.write_text(textwrap.dedent(f"""
        import os, pytest
        from replaydiff.fuzz.testing import fuzz_test

        @pytest.fixture(scope="session")
        def fuzz_targets():
            return {{"baseline": os.environ["BASELINE"], "candidate": os.environ["CANDIDATE"]}}

        test_shop = fuzz_test({str(CORPUS)!r}, endpoints=["{QUOTE}", "GET /api/health"], examples=60, seed=1,
                              database=None)
    """))
    env = {**os.environ, "BASELINE": shop["baseline"], "CANDIDATE": shop["candidate"]}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(module)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "1 failed, 1 passed" in run.stdout, run.stdout
    assert "test_shop[POST /api/cart/quote]" in run.stdout and '"quantity": 0' in run.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl.zst", "--baseline", "http://127.0.0.1:1", "--candidate", "http://127.0.0.1:1"],
         "no such file"),
        ([str(CORPUS), "--baseline", "ftp://x", "--candidate", "http://127.0.0.1:1"], "is not an http(s) URL"),
        ([str(CORPUS), "--baseline", "http://127.0.0.1:1", "--candidate", "http://127.0.0.1:1", "--endpoint",
          "GET /nothing"], "no endpoint of"),
        ([str(CORPUS), "--baseline", "http://127.0.0.1:1", "--candidate", "http://127.0.0.1:1"], "unreachable"),
        ([str(CORPUS), "--baseline", "http://shop.example.com", "--candidate", "http://127.0.0.1:1"],
         "--allow-host shop.example.com"),
        ([str(CORPUS), "--baseline", "http://127.0.0.1:1", "--candidate", "http://127.0.0.1:1",
          "--save-failures", str(CORPUS.parent / "__init__.py")], "__init__.py"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["fuzz", *args, "--database", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_bad_time_budget_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["fuzz", str(CORPUS), "--baseline", "http://127.0.0.1:1", "--candidate", "http://127.0.0.1:1",
               "--time-budget", "soon"])  # fmt: skip
    assert result.exit_code == 2 and "'soon' is not a duration" in result.stderr


def test_json_shapes_of_the_demo_corpus_are_inferred() -> None:
    """The shapes the demo session depends on: quantity's recorded range, coupon nullable, ids as path params."""
    from replaydiff.fuzz.infer import infer_endpoints

    shapes = infer_endpoints(CorpusReader(CORPUS))
    quote = shapes[QUOTE].body
    item = quote.fields["items"].items
    assert item is not None and (item.fields["quantity"].low, item.fields["quantity"].high) == (1, 3)
    assert quote.fields["coupon"].nullable and quote.fields["coupon"].enum_like
    assert shapes["GET /api/products/{id}"].params[0].format == "integer"
    assert json.loads(shapes[QUOTE].recorded()[0].body)["items"]
