"""`python -m replaydiff.demo.upstream`: record the shops' calls to inventory for `replaydiff demo --mock`.

Replays the bundled corpus once through the baseline shop with a recording tap
in front of the real inventory, and keeps the tap's log beside the corpus
(`demo-shop.upstream.jsonl.zst`). Shipped rather than recorded when the demo
starts: `demo --mock` exists to show a replay with the dependency switched off,
so it must not need that dependency. The calls' trace ids are the replayer's
for the bundled corpus (the same for every replay without `--trace-salt`), so
every later replay's calls find their exchange exactly.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from rich.console import Console

from replaydiff.corpora import UpstreamLogReader
from replaydiff.demo.samples import sample_path
from replaydiff.demo.system import DEMO_UPSTREAM, DemoSystem
from replaydiff.replayer.credentials import Credentials, load_identities
from replaydiff.replayer.engine import ReplayOptions
from replaydiff.replayer.targets import Target
from replaydiff.replaying import ReplayJob, replay_corpus

DEMO_ACCOUNTS = Path(__file__).parent / "accounts.toml"
RECORDING_CONCURRENCY = 4
"""Closed loop, a few requests at a time: inventory's answers depend on the request only, not on timing, and
a busy machine must not make the shops time out (their calls would be recorded without answers)."""


def record_demo_upstream(output: Path = DEMO_UPSTREAM, *, console: Console | None = None) -> int:
    """Returns how many calls were recorded."""
    with tempfile.TemporaryDirectory(prefix="replaydiff-demo-upstream-") as scratch:
        with DemoSystem(keep_upstream_log=output) as system:
            job = ReplayJob(
                corpus=sample_path("demo-shop"),
                targets=[Target.parse("baseline", system.baseline)],
                output=Path(scratch) / "results.jsonl.zst",
                options=ReplayOptions(
                    credentials=Credentials(load_identities(DEMO_ACCOUNTS)), concurrency=RECORDING_CONCURRENCY
                ),
            )
            replay_corpus(job, console=console or Console(stderr=True))
    return UpstreamLogReader(output).count()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEMO_UPSTREAM
    print(f"recorded {record_demo_upstream(target)} inventory calls to {target}", file=sys.stderr)
