"""Replay throughput against locust (FastHttpUser, headless) and wrk, driving the same local server in one run.

The figure is the rate of answered requests over all targets: `replaydiff
replay --concurrency N` sends each exchange to baseline, baseline2 and
candidate (here all the same server), so it counts three requests per
exchange. Only requests that got a 2xx or 3xx answer count, for every tool (a
refused or reset connection is fast and would flatter whoever fails most):
the replay's results without an error, locust's requests less its failures,
wrk's requests less its non-2xx/3xx answers. Each tool gets the same number
of connections (3 N). Goals (issue 4): at least 2× locust and at least 0.5× wrk.

Two local servers, each measured with all three clients: `protocol` (cheaper
per request than any client, so the clients are what is measured; wrk far
ahead) and `aiohttp` (a plain aiohttp app, the kind of server the issue's
calibration "an aiohttp client and locust reach about a third of wrk" fits).

Run: .venv/bin/python bench/replay_throughput.py [--exchanges N] [--concurrency N] [--servers S,S]
     [--processes N] [--profile]
(`make bench` installs wrk first.) `--profile` also runs the replay under
cProfile and prints where its time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import re
import shutil
import sys
import tempfile
from pathlib import Path

from replaydiff.corpora import ResultsReader

sys.path.insert(0, str(Path(__file__).parent))
from fixtures import fast_server, machine_note, synthetic_corpus, timed_run  # noqa: E402

DURATION_S = 10
PATH = "/api/products/1"
LOCUSTFILE = """
from locust import FastHttpUser, constant, task

class Hammer(FastHttpUser):
    wait_time = constant(0)

    @task
    def get(self):
        self.client.get("%s")
""" % PATH


def replay_rate(corpus: Path, url: str, concurrency: int, tmp: Path, processes: int = 1) -> float:
    output = tmp / "results.jsonl.zst"
    timed_run([sys.executable, "-m", "replaydiff.cli", "replay", str(corpus), "--baseline", url, "--candidate", url,
               "--concurrency", str(concurrency), "--processes", str(processes), "--no-correlate", "-o", str(output)])
    reader = ResultsReader(output)
    answered = sum(1 for record in reader if record.final and record.final.status and record.final.status < 400)
    return answered / reader.end["elapsed_s"]


def locust_rate(url: str, users: int, tmp: Path) -> float:
    locustfile = tmp / "hammer.py"
    locustfile.write_text(LOCUSTFILE)
    result, _ = timed_run([sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-H", url,
                           "-u", str(users), "-r", str(users), "--run-time", f"{DURATION_S}s", "--only-summary",
                           "--json", "--loglevel", "WARNING"], timeout=DURATION_S * 3)
    stats = json.loads(result.stdout)
    requests = sum(s["num_requests"] - s["num_failures"] for s in stats)
    span = max(s["last_request_timestamp"] for s in stats) - min(s["start_time"] for s in stats)
    return requests / span


def wrk_rate(url: str, connections: int) -> float:
    result, _ = timed_run(["wrk", "-t2", f"-c{connections}", f"-d{DURATION_S}s", url + PATH],
                          timeout=DURATION_S * 3)
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b", result.stdout)
    assert total, result.stdout
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    seconds = float(total.group(2)) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[total.group(3)]
    return (int(total.group(1)) - (int(failed.group(1)) if failed else 0)) / seconds


def profile_replay(corpus: Path, url: str, concurrency: int, tmp: Path, top: int = 25) -> None:
    """In-process, so cProfile sees the replay's own frames; the table lists self time (where CPU goes)."""
    from replaydiff.cli import main

    profiler = cProfile.Profile()
    args = ["replay", str(corpus), "--baseline", url, "--candidate", url, "--concurrency", str(concurrency),
            "--no-correlate", "-o", str(tmp / "profiled.jsonl.zst")]
    profiler.runcall(main.main, args, standalone_mode=False)
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exchanges", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--servers", default="protocol,aiohttp",
                        help="local servers to measure against (bench/fixtures.py SERVERS), comma-separated")
    parser.add_argument("--processes", type=int, default=2,
                        help="also measure `replay --processes N` (the same total concurrency, divided)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: run `make bench` (it installs the Debian package) or apt-get install wrk")
    connections = 3 * args.concurrency
    note = machine_note()
    print(f"{args.exchanges} exchanges × 3 targets, replay --concurrency {args.concurrency}; "
          f"locust and wrk with {connections} connections, {DURATION_S} s; {note}")
    print(f"  {'server':9s} {'client':32s} {'requests/s':>10s}")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        corpus = synthetic_corpus(tmp / "c.jsonl.zst", count=args.exchanges, sessions=500)
        for server in args.servers.split(","):
            with fast_server(server) as url:
                replays = {p: replay_rate(corpus, url, args.concurrency, tmp, p) for p in (1, args.processes)}
                locust = locust_rate(url, connections, tmp)
                wrk = wrk_rate(url, connections)
                if args.profile:
                    profile_replay(corpus, url, args.concurrency, tmp)
            for processes, replay in replays.items():
                client = f"replaydiff replay --processes {processes}"
                print(f"  {server:9s} {client:32s} {replay:10,.0f}   ÷ locust {replay / locust:5.2f} (goal ≥ 2)"
                      f"   ÷ wrk {replay / wrk:5.2f} (goal ≥ 0.5)")
            print(f"  {server:9s} {'locust FastHttpUser':32s} {locust:10,.0f}")
            print(f"  {server:9s} {'wrk -t2':32s} {wrk:10,.0f}", flush=True)


if __name__ == "__main__":
    main()
