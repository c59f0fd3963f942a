"""The locust side of the locust engine: loaded only by `python -m locust -f` (gevent patches this process).

Master: streams the plan, hands each worker the requests of its shard of
sessions (at most `WINDOW` unanswered per worker, so memory stays bounded
whatever the corpus size), writes the records the workers send back into one
results file, and quits once every worker reported DONE, so a replay stops by
itself when the plan is exhausted.

Worker: each locust user is a slot that takes the next session with requests
waiting and sends them in order, each to all targets at the same moment (one
greenlet per target, joined). The session loop is the asyncio engine's own
(`replayer.session_loop`: due times, think time, timer slack, retries,
correlation); `_WorkerReplay` drives it with gevent's waits, and the user only
fetches the next session and sends it.

Requests go out on blocking sockets that gevent makes cooperative
(`replayer.blocking`), as the same bytes the asyncio engine sends and read by
the same parser (`TargetCodec`, `AnswerReader`; for HTTP/2 the same
`H2Session`); retries, traceparent and
correlation come from the same `replayer` modules too, so both engines'
results diff alike.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import gevent
from gevent.event import Event
from gevent.queue import Queue
from locust import User, constant, events, task
from locust.env import Environment
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner

from replaydiff.corpora import Attempt, CorpusReader, ReplayRecord, Request, Response, ResultsWriter
from replaydiff.replayer import locust_engine as protocol
from replaydiff.replayer.blocking import BlockingH2Pool, BlockingPool
from replaydiff.replayer.client import TargetCodec
from replaydiff.replayer.http1 import HttpClientError, RawAnswer
from replaydiff.replayer.http2 import is_http2
from replaydiff.replayer.correlate import Carried
from replaydiff.replayer.engine import ReplaySummary
from replaydiff.replayer.plan import PlannedRequest, plan
from replaydiff.replayer.schedule_watch import ScheduleWatch
from replaydiff.replayer.session_loop import TIMER_SLACK_S, AttemptLog, ReplaySession, Send, SessionLoop, Wait
from replaydiff.replayer.sessions import shard_of
from replaydiff.replayer.targets import Target
from replaydiff.replayer.tracing import new_span_id, traceparent

BATCH = 200
"""Planned requests or records per message at most; timers send smaller batches so nothing waits long."""
WINDOW = 5000
"""Planned requests a worker may hold unanswered: the read-ahead that keeps memory flat on huge corpora."""
SEND_INTERVAL_S = 0.1


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any, **_: Any) -> None:
    parser.add_argument("--replaydiff-job", default="", include_in_web_ui=False,
                        help="Job file written by `replaydiff replay --engine locust`.")


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    global _worker
    if isinstance(environment.runner, MasterRunner):
        options = environment.parsed_options
        if not options or not options.replaydiff_job:
            raise SystemExit("replaydiff: this locustfile's master is started by `replaydiff replay --engine locust`")
        _MasterReplay(environment, protocol.LocustJob.from_json(json.loads(Path(options.replaydiff_job).read_text())))
    elif isinstance(environment.runner, WorkerRunner):
        _worker = _WorkerReplay(environment)


class _MasterReplay:
    def __init__(self, environment: Environment, job: protocol.LocustJob) -> None:
        assert isinstance(environment.runner, MasterRunner)
        self.environment = environment
        self.runner = environment.runner
        self.job = job
        self.first_target = job.targets[0].name
        self.writer: ResultsWriter | None = None
        self.closed = False
        self.summary = ReplaySummary()
        self.started_ns = 0
        self.shards: list[str] = []
        self.unanswered: dict[str, int] = {}
        self.answered = Event()
        self.done: set[str] = set()
        self.runner.register_message(protocol.RECORDS, self.on_records)
        self.runner.register_message(protocol.DONE, self.on_done)
        self.runner.register_message(protocol.LATE, self.on_late)
        self.late_by_worker: dict[str, int] = {}
        self.watch = ScheduleWatch(lambda line: print(f"replaydiff: {line}", file=sys.stderr, flush=True))
        environment.events.test_start.add_listener(self.on_test_start)
        environment.events.quitting.add_listener(self.on_quitting)

    def on_test_start(self, **_: Any) -> None:
        if self.writer is not None:
            return  # locust may start the users again (rebalancing when a worker joins): hand the work out once
        self.shards = sorted(client.id for client in self.runner.clients.all)
        self.unanswered = dict.fromkeys(self.shards, 0)
        self.writer = ResultsWriter(
            self.job.output, corpus=self.job.corpus, targets={t.name: t.base_url for t in self.job.targets},
            mode=self.job.mode,
        )
        self.started_ns = time.perf_counter_ns()
        job = self.job.to_json()
        for worker in self.shards:
            self.runner.send_message(protocol.JOB, job, worker)
        gevent.spawn(self._feed).link_exception(lambda _: self.runner.quit())
        gevent.spawn(self._flush_periodically)
        gevent.spawn(self._watch_workers)

    def _feed(self) -> None:
        """Streams the plan to the workers; blocks on a worker whose window is full, like the asyncio backlog."""
        passes = (CorpusReader(self.job.corpus) for _ in itertools.count())
        pending: dict[str, list[dict[str, Any]]] = {worker: [] for worker in self.shards}
        for number, planned in enumerate(plan(passes, pacing=self.job.pacing, selection=self.job.selection)):
            worker = self.shards[shard_of(planned.exchange.session, len(self.shards))]
            pending[worker].append(protocol.planned_to_json(planned))
            if len(pending[worker]) >= BATCH:
                while self.unanswered[worker] + BATCH > WINDOW:
                    self._send_all(pending)  # a worker waiting on a partial batch must not stall the others
                    self.answered.clear()
                    self.answered.wait()
                self._send(worker, pending)
            if number % 64 == 0:
                gevent.sleep(0)  # reading the corpus must not starve the records coming back
        self._send_all(pending)
        self.runner.send_message(protocol.END)

    def _send(self, worker: str, pending: dict[str, list[dict[str, Any]]]) -> None:
        batch, pending[worker] = pending[worker], []
        if batch:
            self.unanswered[worker] += len(batch)
            self.runner.send_message(protocol.PLANNED, batch, worker)

    def _send_all(self, pending: dict[str, list[dict[str, Any]]]) -> None:
        for worker in self.shards:
            self._send(worker, pending)

    def on_records(self, msg: Any, **_: Any) -> None:
        if self.writer is None or self.closed:
            return  # in flight when the run was interrupted: the file already holds a valid, complete prefix
        for data in msg.data:
            record = ReplayRecord.from_json(data)
            self.writer.write(record)
            self.summary.count(record.target, record.attempts[-1])
            self.summary.carried.add(record.endpoint, record.target, record.carried, record.not_carried)
            if record.target == self.first_target:
                self.summary.completed += 1
                self.summary.lags_us.append(record.schedule_lag_us)
                self.unanswered[msg.node_id] -= 1
        self.answered.set()

    def on_late(self, msg: Any, **_: Any) -> None:
        self.late_by_worker[msg.node_id] = int(msg.data)

    def on_done(self, msg: Any, **_: Any) -> None:
        self.done.add(msg.node_id)
        self.summary.late = (self.summary.late or 0) + msg.data.get("late", 0)
        if self.done >= set(self.shards):
            self._close(interrupted=False)
            Path(self.job.summary).write_text(json.dumps(self.summary.to_message()))
            self.environment.process_exit_code = 0  # target errors are outcomes in the results, not a failed run
            gevent.spawn(self.runner.quit)

    def on_quitting(self, **_: Any) -> None:
        """Ctrl-C, SIGTERM or lost workers: keep everything received so far in a valid results file."""
        self._close(interrupted=True)

    def _close(self, *, interrupted: bool) -> None:
        if self.writer is None or self.closed:
            return
        self.closed = True
        self.summary.elapsed_s = (time.perf_counter_ns() - self.started_ns) / 1e9
        self.writer.close(interrupted=interrupted, **self.summary.to_json())

    def _watch_workers(self) -> None:
        """A worker that stops sending heartbeats (killed, its machine gone) holds a shard nobody else can
        replay: end the run with what arrived, and say so, rather than wait for it forever."""
        while not self.closed:
            gevent.sleep(1)
            lost = [
                worker for worker in self.shards
                if worker not in self.done
                and (worker not in self.runner.clients or self.runner.clients[worker].state == STATE_MISSING)
            ]  # fmt: skip
            if lost and not self.closed:
                self._close(interrupted=True)
                Path(self.job.summary).write_text(json.dumps({**self.summary.to_message(), "lost_workers": lost}))
                gevent.spawn(self.runner.quit)

    def _flush_periodically(self) -> None:
        while self.writer is not None and not self.closed:
            self.writer.flush_if_due()
            self.watch.check(self.summary.completed, sum(self.late_by_worker.values()), self.summary.lags_us)
            gevent.sleep(0.5)


class _TargetSender:
    """One target's blocking pool (cooperative under gevent): its own connections, so a slow candidate never
    holds the baseline's; the bytes sent and the outcome recorded are the asyncio engine's (`TargetCodec`)."""

    def __init__(self, target: Target, job: protocol.LocustJob) -> None:
        self.target = target
        self._codec = TargetCodec(target)
        timeouts = job.options.timeouts
        self._pool = BlockingPool(
            self._codec.origin(job.options.tls), connect_timeout=timeouts.connect_s, read_timeout=timeouts.read_s,
            max_body=self._codec.max_body,
        )
        self._speaks_http2 = job.options.http2
        self._http2 = BlockingH2Pool(
            self._codec.origin(job.options.tls, http2=True), connect_timeout=timeouts.connect_s,
            read_timeout=timeouts.read_s, max_body=self._codec.max_body,
        )  # fmt: skip

    def send(self, request: Request, *, epoch_ns: int, trace_id: str) -> tuple[Attempt, Response | None]:
        span_id = new_span_id()
        started = time.perf_counter_ns()
        extra = [("traceparent", traceparent(trace_id, span_id))]
        method = request.method.upper()
        result: RawAnswer | HttpClientError
        try:
            if self._speaks_http2 and is_http2(request.http_version):
                fields, body = self._codec.http2_request(request, extra)
                result = self._http2.request(fields, body)
            else:
                result = self._pool.request(self._codec.wire_request(request, extra), method=method)
        except HttpClientError as exc:
            result = exc
        return self._codec.outcome(result, started_ns=started, epoch_ns=epoch_ns, span_id=span_id)


class _WorkerReplay:
    """This worker's shard: the session loop (`replayer.session_loop`) on gevent, the target senders, and records
    for the master."""

    def __init__(self, environment: Environment) -> None:
        assert isinstance(environment.runner, WorkerRunner)
        self.environment = environment
        self.runner = environment.runner
        self.job: protocol.LocustJob | None = None
        self.loop: SessionLoop | None = None
        self.senders: list[_TargetSender] = []
        self.ready: Queue[ReplaySession] = Queue()
        self.spawned = Event()
        self.received = self.completed = self.late = 0
        self.ended = self.reported = False
        self.records: list[dict[str, Any]] = []
        for message, handler in ((protocol.JOB, self.on_job), (protocol.PLANNED, self.on_planned),
                                 (protocol.END, self.on_end)):
            self.runner.register_message(message, handler)
        environment.events.spawning_complete.add_listener(self.on_spawned)

    def on_job(self, msg: Any, **_: Any) -> None:
        self.job = protocol.LocustJob.from_json(msg.data)
        self.loop = SessionLoop(self.job.options)
        self.senders = [_TargetSender(target, self.job) for target in self.job.targets]
        gevent.spawn(self._send_periodically)

    def on_spawned(self, **_: Any) -> None:
        """The replay clock starts once every slot exists: starting earlier would show spawning as lag."""
        assert self.loop is not None  # locust spawns the users only after the master's JOB
        self.loop.epoch_ns = time.perf_counter_ns()
        self.spawned.set()

    def on_planned(self, msg: Any, **_: Any) -> None:
        assert self.loop is not None  # planned requests only come after the job
        for data in msg.data:
            session = self.loop.enqueue(protocol.planned_from_json(data))
            if session is not None:
                self.ready.put(session)
        self.received += len(msg.data)

    def on_end(self, msg: Any, **_: Any) -> None:
        self.ended = True
        self._report_if_done()

    def next_session(self) -> ReplaySession:
        self.spawned.wait()
        return self.ready.get()

    def drain(self, session: ReplaySession) -> None:
        assert self.loop is not None
        for step in self.loop.steps(session):
            if isinstance(step, Wait):
                gevent.sleep(step.seconds + TIMER_SLACK_S)  # libev counts whole milliseconds
            else:
                self._fan_out(step, session)
        self._report_if_done()

    def _fan_out(self, send: Send, session: ReplaySession) -> None:
        """Every target at the same moment, one greenlet each, joined."""
        sends = [gevent.spawn(self._attempts, send.planned, sender, session) for sender in self.senders]
        gevent.joinall(sends, raise_error=True)
        assert self.loop is not None
        for record in self.loop.records(send, session, [greenlet.value for greenlet in sends]):
            self.records.append(record.to_json())
            self._report_request(record)
        self.completed += 1
        self.late += send.late
        if len(self.records) >= BATCH:
            self._send_records()

    def _attempts(
        self, planned: PlannedRequest, sender: _TargetSender, session: ReplaySession
    ) -> tuple[str, str, AttemptLog, Carried]:
        """Every attempt at one target under the retry policy; the last one's response is final."""
        assert self.loop is not None
        trace_id, carried = self.loop.request_for(planned, session, sender.target.name)
        request = carried.request
        log = self.loop.attempts()
        while (backoff_s := log.add(*sender.send(request, epoch_ns=self.loop.epoch_ns, trace_id=trace_id))) is not None:
            gevent.sleep(backoff_s)
        return sender.target.name, trace_id, log, carried

    def _report_request(self, record: ReplayRecord) -> None:
        """Locust's own statistics, per target and endpoint, so its summary describes the replay too."""
        final = record.attempts[-1]
        self.environment.events.request.fire(
            request_type=record.endpoint.split(" ", 1)[0],
            name=f"{record.target} {record.endpoint}",
            response_time=final.duration_us / 1000,
            response_length=len(record.response.body) if record.response else 0,
            response=None,
            context={},
            exception=ConnectionError(final.error_detail or final.error) if final.error else None,
        )

    def _send_records(self) -> None:
        if self.records:
            batch, self.records = self.records, []
            self.runner.send_message(protocol.RECORDS, batch)
            self.runner.send_message(protocol.LATE, self.late)

    def _send_periodically(self) -> None:
        while not self.reported:
            gevent.sleep(SEND_INTERVAL_S)
            self._send_records()

    def _report_if_done(self) -> None:
        if self.ended and not self.reported and self.completed == self.received:
            self._send_records()
            self.runner.send_message(protocol.DONE, {"completed": self.completed, "late": self.late})
            self.reported = True


_worker: _WorkerReplay | None = None


class SessionSlot(User):
    """A slot: sends the waiting requests of the next session of this worker's shard, then takes the next."""

    wait_time = constant(0)

    @task
    def replay_next_session(self) -> None:
        assert _worker is not None, "SessionSlot runs only on a locust worker started by replaydiff"
        _worker.drain(_worker.next_session())
