"""Schedule fidelity: how late requests leave at 1,000 requests/s of recorded timing (goal: p99 lag < 2 ms).

Every result record carries `schedule_lag_us` (how late its request left
compared with its plan); this replays a synthetic corpus recorded at a steady
1,000 exchanges/s over many sessions against a fast local server and reads
the lags back from the results file.

Run: .venv/bin/python bench/replay_fidelity.py [--seconds S] [--rate R] [--sessions N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from replaydiff.corpora import ResultsReader

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import fast_server, machine_note, synthetic_corpus, timed_run  # noqa: E402

GOAL_P99_MS = 2.0


def percentile(ordered: list[int], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=1000, help="recorded exchanges per second")
    parser.add_argument("--sessions", type=int, default=200)
    args = parser.parse_args()
    note = machine_note()
    with tempfile.TemporaryDirectory() as name, fast_server() as url:
        tmp = Path(name)
        corpus = synthetic_corpus(tmp / "c.jsonl.zst", count=args.seconds * args.rate, sessions=args.sessions,
                                  interval_us=1_000_000 // args.rate)
        output = tmp / "r.jsonl.zst"
        timed_run([sys.executable, "-m", "replaydiff.cli", "replay", str(corpus), "--baseline", url,
                   "--candidate", url, "--no-correlate", "-o", str(output)])
        reader = ResultsReader(output)
        first = next(iter(reader.header["targets"]))
        lags = sorted(r.schedule_lag_us for r in reader if r.target == first)
    p99 = percentile(lags, 0.99)
    print(f"{len(lags)} exchanges recorded at {args.rate}/s over {args.sessions} sessions, replayed at speed 1 "
          f"to 3 targets on one local server; {note}")
    print(f"  {'p50':>8s} {'p90':>8s} {'p99':>8s} {'max':>8s}   goal p99 < {GOAL_P99_MS:g} ms")
    print(f"  {percentile(lags, 0.5):7.2f}ms {percentile(lags, 0.9):7.2f}ms {p99:7.2f}ms {lags[-1] / 1000:7.2f}ms"
          f"   {'met' if p99 < GOAL_P99_MS else 'NOT met'}")


if __name__ == "__main__":
    main()
