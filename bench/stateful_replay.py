"""Stateful replay on a real application: Kinto (from PyPI, in-memory backend) recorded and replayed A/A.

N clients (default 10) each create a bucket and a collection (server-made names), records (server-made ids),
read, patch and delete them with `If-None-Match` / `If-Match`, and page through `Next-Page`; all of it recorded
through `replaydiff record`, then replayed to three fresh Kinto processes (baseline, baseline2, candidate) and
diffed. Prints: sessions in the corpus, the share of exchanges each target answered with the recorded status
(goal >= 99%), divergences reported (goal 0), carried values, and the baseline's status mismatches by endpoint.

Run: .venv/bin/python bench/stateful_replay.py [--clients 10] [--records 15] [--keep DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.kinto_app import KINTO_VERSION, kinto_server, record, replay_aa  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--records", type=int, default=15, help="records per client (about 5 requests each, 78 in all)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (corpus, results, logs)")
    parser.add_argument("--record-option", action="append", default=[], help="extra option for replaydiff record")
    parser.add_argument("--replay-option", action="append", default=[], help="extra option for replaydiff replay")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.keep or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        with kinto_server(workdir / "k0") as upstream:
            corpus = record(workdir, upstream, clients=args.clients, records=args.records,
                            extra=tuple(args.record_option))  # fmt: skip
        result = replay_aa(workdir, corpus, extra=tuple(args.replay_option))
    print(f"kinto {KINTO_VERSION}: {args.clients} clients, {result.exchanges} exchanges, {result.sessions} sessions")
    for target in ("baseline", "baseline2", "candidate"):
        same = result.same_status.get(target, 0)
        share = f"{same}/{result.exchanges} = {result.share(target):.1%}"
        print(f"  {target:<10} answered with the recorded status: {share}")
    print(f"  diff: verdict {result.verdict}, {result.divergences} divergent exchanges "
          f"on {result.divergent_endpoints} of {result.endpoints} endpoints (latency excluded)")
    for target in ("baseline", "baseline2", "candidate"):
        counts = [by_target[target] for by_target in result.carried.values() if target in by_target]
        carried, not_found = sum(c["carried"] for c in counts), sum(c["not_found"] for c in counts)
        print(f"  {target:<10} values carried from its earlier answers: {carried}, not found in them: {not_found}")
    for what, count in result.mismatches.most_common(10):
        print(f"  baseline mismatch ×{count}: {what}")


if __name__ == "__main__":
    main()
