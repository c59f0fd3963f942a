"""Peak memory of a replay over a corpus of 1,000,000 exchanges (goal: peak RSS < 300 MB).

The whole corpus is generated, and each replay of it is cut short with
`--limit N` (the first N exchanges), so what it shows is whether
planning, sending and writing results stream: a planner that loads the
corpus, or a summary that grows per exchange, shows up as RSS growing with
the corpus or with the limit. Two limits and the bare interpreter with the
replayer's imports make the growth visible.

The peak is the kernel's high-water mark of the child's RSS (VmHWM), polled
every 20 ms: only growth in the child's last 20 ms could be missed.

Run: .venv/bin/python bench/replay_memory.py [--exchanges N] [--limits 5000,20000]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import fast_server, machine_note, synthetic_corpus  # noqa: E402

GOAL_MB = 300
IMPORTS = "import replaydiff.cli, replaydiff.replayer.engine, replaydiff.replaying"
POLL_S = 0.02


def peak_rss_mb(command: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one child process.

    Read from the kernel's own high-water mark (VmHWM) while the child runs;
    wait4's ru_maxrss would not do, as Linux carries the parent's RSS at fork
    into it.
    """
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    status = Path(f"/proc/{process.pid}/status")
    peak_kb = 0
    while process.poll() is None:
        with contextlib.suppress(OSError):
            peak_kb = max(peak_kb, _vm_hwm_kb(status.read_text()))
        time.sleep(POLL_S)
    if process.returncode != 0:
        assert process.stderr is not None
        raise SystemExit(f"{' '.join(command[:5])}… failed:\n{process.stderr.read().decode()[-2000:]}")
    return peak_kb / 1024, time.perf_counter() - started


def _vm_hwm_kb(status: str) -> int:
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=1_000_000)
    parser.add_argument("--limits", default="5000,20000")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sessions", type=int, default=10_000,
                        help="session keys in the corpus; the replayer keeps state per recent session")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name, fast_server() as url:
        tmp = Path(name)
        started = time.perf_counter()
        corpus = synthetic_corpus(tmp / "big.jsonl.zst", count=args.exchanges, sessions=args.sessions)
        print(f"{machine_note()}; corpus: {args.exchanges:,} exchanges in {args.sessions:,} sessions, "
              f"{corpus.stat().st_size / 1e6:.0f} MB on disk, written in {time.perf_counter() - started:.0f} s")
        rows = [("python + replayer imports", *peak_rss_mb([sys.executable, "-c", IMPORTS]))]
        for limit in map(int, args.limits.split(",")):
            command = [sys.executable, "-m", "replaydiff.cli", "replay", str(corpus), "--baseline", url,
                       "--candidate", url, "--concurrency", str(args.concurrency), "--limit", str(limit),
                       "-o", str(tmp / f"r{limit}.jsonl.zst")]
            rows.append((f"replay --limit {limit:,}", *peak_rss_mb(command)))
    print(f"  {'process':32s} {'peak RSS':>10s} {'wall':>8s}   goal < {GOAL_MB} MB")
    for label, rss, wall in rows:
        print(f"  {label:32s} {rss:8.0f}MB {wall:7.0f}s")


if __name__ == "__main__":
    main()
