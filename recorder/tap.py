"""The tap: an egress proxy between a service under test and its dependencies.

It records every upstream call with the `traceparent` the service propagated,
which names the replayed request (and target) that caused it, and it injects
seeded faults identically for baseline and candidate. Run it as the service's
reverse proxy per dependency (`--route inventory=http://127.0.0.1:5001`, one
listening port each) or as its HTTP proxy (forward mode; the dependency is
then the request's host). Each call is logged whole (request and answer,
sanitized as `record` sanitizes; `tap_whole_calls` off logs outcomes only), so the log can serve as a mock's recording;
with a mock (`recorder.mock_tap`) the tap answers from such a recording
instead of forwarding.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy.mode_specs import ReverseMode

from replaydiff.corpora import UpstreamCall, UpstreamLogWriter
from replaydiff.corpora.trace import exchange_key, parse_traceparent
from replaydiff.recorder.faults import Fault, FaultPlan, FaultRulesError, check_dependencies, load_fault_plan
from replaydiff.recorder.mock_tap import CallCapture, MockAnswers, MockResult

_METADATA = "replaydiff_tap"


@dataclass(slots=True)
class _Pending:
    dependency: str
    trace_id: str
    fault: Fault | None
    started: float
    deadline: asyncio.TimerHandle | None = None
    timed_out: bool = False
    mocked: MockResult | None = None


_KEPT_ORDINALS = 100_000


class Tap:
    def __init__(self, *, on_running: Callable[[], None] | None = None) -> None:
        """`on_running` is called once the log is open and the listeners are up (`replaydiff tap` announces
        them there): a callback rather than an addon of its own, which would see every hook of every flow."""
        self._on_running = on_running
        self.writer: UpstreamLogWriter | None = None
        self.plan = FaultPlan()
        self.calls = 0
        self._routes: dict[str, str] = {}
        self._ordinals: OrderedDict[tuple[str, str, str], int] = OrderedDict()
        self._ticker: asyncio.Task[None] | None = None
        self.capture = CallCapture()
        self.mock: MockAnswers | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option("tap_output", str, "", "Where the tap writes the upstream calls it saw (.jsonl.zst).")
        loader.add_option(
            "tap_routes",
            str,
            "",
            "Dependency names by listener, as 'inventory=reverse:http://127.0.0.1:5001@9001,...' (NAME=MODE); "
            "in forward mode a dependency is named by its host:port.",
        )
        loader.add_option("tap_faults", str, "", "A TOML file of seeded fault rules ([[fault]] tables).")
        loader.add_option(
            "tap_timeout",
            float,
            0.0,
            "Seconds a dependency has for its whole answer (headers and body), from when the call reached the tap; "
            "a call still unanswered then is cut and logged as a timeout. 0: no limit.",
        )
        loader.add_option(
            "tap_seed",
            Optional[int],
            None,
            "Seed of the fault decisions (default: the faults file's, else 0); the same seed repeats the same faults.",
        )
        self.capture.load(loader)
        MockAnswers.load_options(loader)

    def configure(self, updated: set[str]) -> None:
        if "tap_routes" in updated:
            self._routes = {}
            for item in filter(None, (part.strip() for part in ctx.options.tap_routes.split(","))):
                name, sep, spec = item.partition("=")
                if not sep or not name or not spec:
                    raise exceptions.OptionsError(f"tap_routes: {item!r} is not NAME=MODE")
                self._routes[spec] = name
        if updated & {"tap_faults", "tap_seed", "tap_routes"}:
            try:
                self.plan = (
                    load_fault_plan(Path(ctx.options.tap_faults), seed=ctx.options.tap_seed)
                    if ctx.options.tap_faults
                    else FaultPlan(seed=ctx.options.tap_seed or 0)
                )
                if self._routes:
                    check_dependencies(self.plan, self._routes.values(), source=ctx.options.tap_faults)
            except FaultRulesError as exc:
                raise exceptions.OptionsError(str(exc)) from None
        self.capture.configure(updated)
        if updated & MockAnswers.OPTIONS:
            self.mock = MockAnswers.configured()

    def running(self) -> None:
        if not ctx.options.tap_output:
            raise exceptions.OptionsError("tap_output is required: where to write the upstream calls")
        # compressed, written and fsynced in a thread of its own: an fsync on a busy disk stalled this loop, and
        # with it every call the services made through the tap, into their timeouts
        self.writer = UpstreamLogWriter(
            ctx.options.tap_output, routes=self._routes, seed=self.plan.seed, faults=len(self.plan.rules),
            background=True,
        )
        self._ticker = asyncio.get_running_loop().create_task(self._flush_every_half_second())
        if self._on_running is not None:
            self._on_running()

    async def _flush_every_half_second(self) -> None:
        """Writes what is due, then marks the log flushed (its mtime) when nothing waits: a replay attaching the
        calls waits for a mark after its end (`replayer.upstream`)."""
        while self.writer is not None:
            await asyncio.sleep(0.5)
            if self.writer is not None:
                self.writer.flush_if_due()
                self.writer.mark_flushed()

    def _dependency(self, flow: http.HTTPFlow) -> str:
        """By listener: two routes to the same upstream (one per target) stay apart."""
        mode = flow.client_conn.proxy_mode
        if isinstance(mode, ReverseMode):
            return self._routes.get(mode.full_spec, mode.data)
        return f"{flow.request.host}:{flow.request.port}"

    def _next_ordinal(self, key: tuple[str, str, str]) -> int:
        """Counted per attempt (trace and span), so a rerun with the same trace ids starts again at 0."""
        ordinal = self._ordinals.pop(key, 0)
        self._ordinals[key] = ordinal + 1
        while len(self._ordinals) > _KEPT_ORDINALS:
            self._ordinals.popitem(last=False)
        return ordinal

    async def request(self, flow: http.HTTPFlow) -> None:
        dependency = self._dependency(flow)
        trace_id, span_id = parse_traceparent(flow.request.headers.get("traceparent", ""))
        ordinal = self._next_ordinal((trace_id, span_id, dependency))
        key = exchange_key(trace_id) if trace_id else "untraced"
        fault = self.plan.decide(key, dependency, flow.request.method, flow.request.path, ordinal)
        pending = flow.metadata[_METADATA] = _Pending(dependency, trace_id, fault, time.time())
        if ctx.options.tap_timeout > 0:
            pending.deadline = asyncio.get_running_loop().call_later(ctx.options.tap_timeout, self._expire, flow)
        if fault is not None:
            await self._inject(flow, fault)
        self._answer_from_mock(flow, dependency, trace_id, ordinal)

    async def _inject(self, flow: http.HTTPFlow, fault: Fault) -> None:
        if fault.delay_ms:
            await asyncio.sleep(fault.delay_ms / 1000)
        if fault.reset:
            flow.kill()
        elif fault.status is not None:
            flow.response = http.Response.make(
                fault.status, b'{"error": "fault injected by replaydiff tap"}', {"Content-Type": "application/json"}
            )

    def _expire(self, flow: http.HTTPFlow) -> None:
        """The whole answer did not come in time: cut the connection to the dependency, so mitmproxy ends the
        flow with an error (answering the service 502) and `error` logs it as a timeout.

        mitmproxy cannot kill a flow in transit (`Flow.kill` only stops one not yet forwarded, mitmproxy issue
        4711), so the cut goes through the proxy server's connection handler: the one place that owns the
        dependency's socket."""
        pending: _Pending | None = flow.metadata.get(_METADATA)
        if pending is None:
            return
        pending.timed_out = True
        handler = ctx.master.addons.get("proxyserver").connections.get(flow.client_conn.id)
        transport = handler.transports.get(flow.server_conn) if handler is not None else None
        if transport is not None and transport.handler is not None:
            transport.handler.cancel()
        elif flow.killable:
            flow.kill()

    def _answer_from_mock(self, flow: http.HTTPFlow, dependency: str, trace_id: str, ordinal: int) -> None:
        """A faulted call keeps its fault; a delay-only fault delays the mocked answer as it would the real one."""
        pending: _Pending = flow.metadata[_METADATA]
        if self.mock is not None and not (pending.fault and (pending.fault.reset or pending.fault.status)):
            pending.mocked = self.mock.respond(flow, dependency, trace_id, ordinal)

    def response(self, flow: http.HTTPFlow) -> None:
        self._write(flow, status=flow.response.status_code if flow.response else None, error=None)

    def error(self, flow: http.HTTPFlow) -> None:
        pending: _Pending | None = flow.metadata.get(_METADATA)
        killed = pending is not None and pending.fault is not None and pending.fault.reset
        if pending is not None and pending.timed_out:
            error = f"timeout: no complete answer within {ctx.options.tap_timeout:g} s"
        else:
            error = "reset" if killed else (flow.error.msg if flow.error else "error")
        self._write(flow, status=None, error=error)

    def _write(self, flow: http.HTTPFlow, *, status: int | None, error: str | None) -> None:
        pending: _Pending | None = flow.metadata.pop(_METADATA, None)
        if pending is not None and pending.deadline is not None:
            pending.deadline.cancel()
        if pending is None or self.writer is None:
            return
        ended = time.time()
        call = UpstreamCall(
            dependency=pending.dependency,
            method=flow.request.method,
            path=flow.request.path,
            status=status,
            error=error,
            start_us=int(pending.started * 1e6),  # wall clock, to line up with the replay's own
            duration_us=int((ended - pending.started) * 1e6),
            trace_id=pending.trace_id,
            fault=pending.fault.describe() if pending.fault else None,
        )
        self.writer.write(self.capture.whole(call, flow) if pending.mocked is None else pending.mocked.logged(call))
        self.calls += 1

    def done(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self.writer is not None:
            self.writer.close(calls=self.calls)
            self.writer = None


addons = [Tap()]
