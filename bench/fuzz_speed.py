"""Fuzz session speed on the demo shop: examples per second, and time to find the planted quantity-0 bug.

Two figures (issue 7):
- examples/s of an A/A session over every endpoint of the bundled corpus
  (each example = one request to baseline, baseline2 and candidate, plus
  the resends a suspect gets);
- time to find the planted bug (`POST /api/cart/quote` answers 500 for
  quantity 0) with the default budget, per seed: until the property first
  fails, and until the whole session ends (shrinking included), both for a
  session over every endpoint and one focused with `--endpoint`.

The bug is planted in the demo candidate itself (`replaydiff/demo/services.py`:
a quote with an item of quantity 0 crashes where the baseline answers 400);
the demo services run in a process of their own, the fuzz session in this one.

Run: .venv/bin/python bench/fuzz_speed.py [--seeds N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from replaydiff.corpora import CorpusReader
from replaydiff.demo.samples import sample_path
from replaydiff.diff.rules import load_rules
from replaydiff.demo.system import DemoSystem
from replaydiff.fuzz.infer import EndpointShape, infer_endpoints, select
from replaydiff.fuzz.sender import FuzzTargets, Sender
from replaydiff.fuzz.session import FuzzOptions, FuzzSession, SessionResult
from replaydiff.fuzz.verdict import NoiseJudge

PLANTED = "status 4xx → 500 (text/plain)"
RULES = load_rules(Path(__file__).parent.parent / "replaydiff" / "demo" / "rules.toml")


class Stopwatch:
    """A session `Progress` that notes when, and after how many examples, the planted bug first showed."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.examples = 0
        self.found_after: tuple[float, int] | None = None

    def endpoint(self, endpoint: str) -> None:
        pass

    def example(self) -> None:
        self.examples += 1

    def divergence(self, signature: str) -> None:
        if signature == PLANTED and self.found_after is None:
            self.found_after = (time.monotonic() - self.started, self.examples)


def session(shapes: list[EndpointShape], targets: FuzzTargets, seed: int) -> tuple[SessionResult, Stopwatch]:
    watch = Stopwatch()
    with Sender(targets) as sender:
        result = FuzzSession(shapes, sender, NoiseJudge(RULES), FuzzOptions(seed=seed, database=None), watch).run()
    return result, watch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    seeds = range(1, 1 + parser.parse_args().seeds)
    shapes = infer_endpoints(CorpusReader(sample_path("demo-shop")), RULES.patterns)
    everything, quote = list(shapes.values()), select(shapes, ["POST /api/cart/quote"])
    with DemoSystem() as demo:
        candidate = demo.candidate
        aa = FuzzTargets.parse(demo.baseline, demo.baseline)
        rates = [session(everything, aa, seed)[0].rate for seed in seeds]
        print(f"A/A, {len(everything)} endpoints x 100 examples: {statistics.median(rates):.0f} examples/s "
              f"(median of {len(rates)}; min {min(rates):.0f}, max {max(rates):.0f})")  # fmt: skip
        planted = FuzzTargets.parse(demo.baseline, candidate)
        for name, selected in (("all endpoints", everything), ("--endpoint 'POST /api/cart/quote'", quote)):
            found, ended, examples, minimal = [], [], [], 0
            for seed in seeds:
                result, watch = session(selected, planted, seed)
                if watch.found_after is not None:
                    found.append(watch.found_after[0])
                    examples.append(watch.found_after[1])
                ended.append(result.elapsed_s)
                bodies = [f.request.body for f in result.failures if f.signature == PLANTED]
                minimal += bodies in ([b'{"items": [{"product_id": 1, "quantity": 0}], "coupon": null}'],
                                      [b'{"items": [{"product_id": 1, "quantity": 0}]}'])  # fmt: skip
            print(f"planted bug, {name}: found in {len(found)}/{len(ended)} sessions; first failure after "
                  f"median {statistics.median(found):.2f} s (max {max(found):.2f} s, median "
                  f"{statistics.median(examples):.0f} examples); session incl. shrinking median "
                  f"{statistics.median(ended):.2f} s; shrunk to the minimal request in {minimal}/{len(ended)}")


if __name__ == "__main__":
    main()
