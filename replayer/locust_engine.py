"""The locust engine: the same replay on locust's master and worker processes, for load beyond one machine.

Why processes of their own: locust's gevent monkey-patches the whole
interpreter, so locust runs only in `python -m locust -f replayer/locustfile.py`
children. This module is what the command line imports, and it never imports
locust. It holds the parent's side (start a master and N local workers, wait,
hand back the summary) and what both locust sides share (the job, the message
names, the session sharding).

Why the master hands out the work by message rather than letting every worker
read the corpus: a worker started with `replaydiff worker --master HOST:PORT`
on another machine has neither the corpus nor the results file. So the master
streams the plan, shards it by a stable hash of the session key (a session
never spans two workers, so its order and its correlated ids hold), and writes
every record the workers send back into ONE results file in the standard format.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from replaydiff.corpora import Exchange
from replaydiff.corpora.ports import free_port
from replaydiff.replayer.client import Timeouts, TLSOptions
from replaydiff.replayer.engine import ReplayOptions, ReplaySummary
from replaydiff.replayer.plan import Pacing, PlannedRequest, Selection
from replaydiff.replayer.correlate import CarryRules
from replaydiff.replayer.retry import RetryPolicy
from replaydiff.replayer.targets import ReplayError, Target

LOCUSTFILE = Path(__file__).with_name("locustfile.py")

# Custom locust messages, master → worker …
JOB = "replaydiff_job"
"""The `LocustJob` as JSON: targets, timeouts, retries; the worker ignores the corpus side."""
PLANNED = "replaydiff_planned"
"""A batch of planned requests for this worker, in due order."""
END = "replaydiff_end"
"""No more planned requests; once the worker has sent everything it received, it reports DONE."""
# … and worker → master
RECORDS = "replaydiff_records"
"""A batch of `ReplayRecord.to_json()` dicts; the master counts them to refill the worker's window."""
DONE = "replaydiff_done"
LATE = "replaydiff_late"
"""The worker's count of requests that left late so far (`session_loop.LATE_SHARE`), with each batch of records:
the master says while it runs when the replay cannot keep up."""

OPEN_LOOP_SLOTS_PER_WORKER = 1000
"""Session slots (locust users) per worker on recorded timing or a fixed rate; a slot sleeps through its
session's think times, so more simultaneously active sessions than this show up as schedule lag."""
WORKERS_CONNECT_TIMEOUT_S = 60
"""How long a master with only local workers waits for them; with remote workers it waits for the user."""
STOP_TIMEOUT_S = 15.0


class LocustEngineError(ReplayError):
    """The locust processes did not complete the replay."""


@dataclass(frozen=True, slots=True)
class LocustJob:
    """What the parent tells the master (a JSON file on its command line) and the master tells each worker."""

    corpus: str
    output: str
    summary: str
    """Where the master writes the `ReplaySummary` for the parent to return."""
    mode: str
    targets: list[Target]
    pacing: Pacing = field(default_factory=Pacing)
    selection: Selection = field(default_factory=Selection)
    options: ReplayOptions = field(default_factory=ReplayOptions)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["options"]["retry"]["retry_on"] = sorted(self.options.retry.retry_on)
        data["options"]["carry"] = {
            "json_paths": [list(path) for path in self.options.carry.json_paths],
            "headers": sorted(self.options.carry.headers),
        }
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LocustJob:
        options = data["options"]
        return cls(
            corpus=data["corpus"],
            output=data["output"],
            summary=data["summary"],
            mode=data["mode"],
            targets=[Target(t["name"], t["base_url"], [(str(n), str(v)) for n, v in t["headers"]])
                     for t in data["targets"]],
            pacing=Pacing(**data["pacing"]),
            selection=Selection(**{**data["selection"], "filters": tuple(data["selection"]["filters"])}),
            options=ReplayOptions(**{
                **options,
                "timeouts": Timeouts(**options["timeouts"]),
                "tls": TLSOptions(**options["tls"]),
                "retry": RetryPolicy(**{**options["retry"], "retry_on": frozenset(options["retry"]["retry_on"])}),
                "carry": CarryRules(
                    tuple(tuple(path) for path in options["carry"]["json_paths"]),
                    frozenset(options["carry"]["headers"]),
                ),
            }),
        )


def planned_to_json(planned: PlannedRequest) -> dict[str, Any]:
    return {"exchange": planned.exchange.to_json(), "endpoint": planned.endpoint, "due_s": planned.due_s,
            "think_s": planned.think_s}


def planned_from_json(data: dict[str, Any]) -> PlannedRequest:
    return PlannedRequest(Exchange.from_json(data["exchange"]), data["endpoint"], data["due_s"], data["think_s"])


def locust_users(*, workers: int, concurrency: int | None) -> int:
    """Locust users are session slots; every worker needs at least one, or its shard would never be sent."""
    if concurrency:
        return max(concurrency, workers)
    return OPEN_LOOP_SLOTS_PER_WORKER * workers


def master_command(job_file: Path, *, users: int, workers: int, bind_host: str, port: int,
                   wait_for_workers_s: int | None) -> list[str]:
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--master", "--headless", "--only-summary",
        "--master-bind-host", bind_host, "--master-bind-port", str(port), "--expect-workers", str(workers),
        "-u", str(users), "-r", str(users), "--loglevel", "WARNING", "--replaydiff-job", str(job_file),
    ]
    if wait_for_workers_s is not None:
        command += ["--expect-workers-max-wait", str(wait_for_workers_s)]
    return command


def worker_command(master_host: str, master_port: int) -> list[str]:
    """What `replaydiff worker --master HOST:PORT` runs, and what the engine runs for each local worker."""
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
        "--master-host", master_host, "--master-port", str(master_port), "--loglevel", "WARNING",
    ]


def run_locust_replay(
    corpus: Path,
    targets: list[Target],
    output: Path,
    *,
    workers: int,
    pacing: Pacing = Pacing(),
    selection: Selection = Selection(),
    options: ReplayOptions = ReplayOptions(),
    mode: str = "",
    remote_workers: int = 0,
    bind_host: str = "127.0.0.1",
    port: int | None = None,
    log: IO[bytes] | int | None = None,
) -> ReplaySummary:
    """Replay `corpus` on a locust master with `workers` local worker processes; results go to `output`.

    `remote_workers` more join with `replaydiff worker --master HOST:PORT`
    (bind the master to an address they reach, e.g. `bind_host="0.0.0.0"`, on
    a known `port`); the replay starts once all have joined. `log` receives
    locust's own output (default: inherited). On Ctrl-C the master closes the
    results file with everything received so far and the KeyboardInterrupt
    propagates to the caller.
    """
    if workers < 0 or workers + remote_workers < 1:
        raise LocustEngineError("the locust engine needs at least one worker; pass --workers N")
    port = port or free_port(bind_host)  # the workers' command line names it before the master binds it
    total = workers + remote_workers
    with tempfile.TemporaryDirectory(prefix="replaydiff-locust-") as tmp:
        job = LocustJob(
            corpus=str(Path(corpus).resolve()), output=str(Path(output).resolve()),
            summary=str(Path(tmp) / "summary.json"), mode=f"{mode or 'replay'}, locust {total} workers",
            targets=targets, pacing=pacing, selection=selection, options=options,
        )
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job.to_json()))
        master = master_command(
            job_file, users=locust_users(workers=total, concurrency=options.concurrency), workers=total,
            bind_host=bind_host, port=port, wait_for_workers_s=None if remote_workers else WORKERS_CONNECT_TIMEOUT_S,
        )
        code = _run_master_and_workers(master, [worker_command(_reachable(bind_host), port)] * workers, log)
        return _summary(Path(job.summary), code, output)


def _run_master_and_workers(master: list[str], workers: list[list[str]], log: IO[bytes] | int | None) -> int:
    """The master's exit code; the local workers are stopped whatever happens, the master too on Ctrl-C."""
    running = _spawn(master, log)
    local = [_spawn(command, log) for command in workers]
    try:
        return running.wait()
    except KeyboardInterrupt:
        _stop(running)
        raise
    finally:
        for process in local:
            _stop(process)


def _summary(summary_file: Path, code: int, output: Path) -> ReplaySummary:
    """What the master wrote when it finished, or why it did not finish."""
    if not summary_file.exists():
        raise LocustEngineError(
            f"the locust master exited with code {code} before the replay finished; see its log above"
        )
    message = json.loads(summary_file.read_text())
    if lost := message.get("lost_workers"):
        raise LocustEngineError(
            f"locust worker {', '.join(lost)} stopped answering mid-replay; the {message['completed']} exchanges "
            f"completed before are in {output} (marked interrupted)"
        )
    return ReplaySummary.from_message(message)


def _reachable(bind_host: str) -> str:
    return "127.0.0.1" if bind_host in ("0.0.0.0", "", "*") else bind_host


def _spawn(command: list[str], log: IO[bytes] | int | None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Workers quit when the master tells them; this cleans up after a master that died or was interrupted."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
