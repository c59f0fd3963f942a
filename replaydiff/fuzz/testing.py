"""Fuzz sessions as pytest tests, so teams keep them in their suite and CI.

One test case per endpoint, so a CI report says which endpoint diverged, and
a failing case shows the same report as `replaydiff fuzz`: the minimal
request, both answers side by side, curl lines. The targets come from a
`fuzz_targets` fixture the suite defines, because only the suite knows where
(or how to start) its baseline and candidate:

    # tests/test_shop_fuzz.py
    import os, pytest
    from replaydiff.fuzz.testing import fuzz_test

    @pytest.fixture(scope="session")
    def fuzz_targets():
        return {"baseline": os.environ["BASELINE_URL"], "candidate": os.environ["CANDIDATE_URL"]}

    test_shop = fuzz_test("traffic.jsonl.zst", examples=50, seed=1)

The corpus is read when the module is collected, to know its endpoints.
"""

from __future__ import annotations

import glob
import io
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pytest
from rich.console import Console

from replaydiff.corpora import CorpusReader
from replaydiff.corpora.endpoints import corpus_endpoints
from replaydiff.diff.rules import Rules, load_rules
from replaydiff.fuzz.infer import infer_endpoints, select
from replaydiff.fuzz.live import Quiet
from replaydiff.fuzz.report import print_report
from replaydiff.fuzz.sender import FuzzTargets
from replaydiff.fuzz.session import DEFAULT_DATABASE, FuzzOptions
from replaydiff.fuzz.workflow import FuzzJob, run_fuzz


def fuzz_test(
    corpus: Path | str,
    *,
    endpoints: Iterable[str] = (),
    examples: int = 50,
    seed: int | None = None,
    time_budget_s: float = 60.0,
    rules_file: Path | str | None = None,
    allowed_hosts: Iterable[str] = (),
    save_failures: Path | str | None = None,
    database: Path | None = DEFAULT_DATABASE,
) -> Callable[[Mapping[str, str], str], None]:
    """A test function parametrized by endpoint; assign it to a `test_*` name in a test module."""
    corpus = Path(corpus)
    rules = load_rules(Path(rules_file)) if rules_file else Rules()
    patterns = rules.patterns.with_learned(corpus_endpoints(corpus))
    names = [shape.endpoint for shape in select(infer_endpoints(CorpusReader(corpus), patterns), endpoints)]
    options = FuzzOptions(examples=examples, seed=seed, time_budget_s=time_budget_s, database=database,
                          label=corpus.name)  # fmt: skip

    @pytest.mark.parametrize("endpoint", names)
    def test(fuzz_targets: Mapping[str, str], endpoint: str) -> None:
        targets = FuzzTargets.parse(fuzz_targets["baseline"], fuzz_targets["candidate"], fuzz_targets.get("baseline2"))
        job = FuzzJob(
            corpus=corpus,
            targets=targets,
            endpoints=(glob.escape(endpoint),),
            options=options,
            rules=rules,
            allowed_hosts=frozenset(allowed_hosts),
            save_failures=Path(save_failures) if save_failures else None,
        )
        result = run_fuzz(job, Quiet())
        if result.failures:
            console = Console(file=io.StringIO(), width=120, record=True)
            print_report(result, targets, console)
            pytest.fail(console.export_text(), pytrace=False)

    return test
