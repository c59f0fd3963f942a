"""The recorder as a mitmproxy addon: every finished flow becomes one sanitized exchange in a corpus.

Runs inside `replaydiff record` and, unchanged, in plain mitmproxy:

    mitmdump -s recorder/addon.py --set replaydiff_output=shop.jsonl.zst \\
        --set confdir=.replaydiff/mitmproxy --mode reverse:http://127.0.0.1:8000

(`confdir` keeps mitmproxy away from the user's ~/.mitmproxy, as `replaydiff record` does.)

Failure policy, chosen on purpose: the proxy sits in front of a live service,
so a corpus that can no longer be written (full disk, unwritable file) must not
take the service down with it. The recorder says so at once in one line on
stderr (printed, not logged, so it shows whatever the host's log settings),
stops recording, lets traffic keep flowing, counts the exchanges it could not
record, and repeats the error when it stops; `replaydiff record` then exits 2.
Websocket and other non-HTTP traffic passes through and is counted, never
recorded: the corpus holds HTTP exchanges only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

from mitmproxy import ctx, exceptions, http, tcp
from mitmproxy.addonmanager import Loader

from replaydiff.corpora import CorpusError, CorpusWriter
from replaydiff.corpora.trace import TRACE_TAG, parse_traceparent
from replaydiff.recorder.capture import DEFAULT_MAX_BODY, exchange_from_flow, truncated
from replaydiff.recorder.h2c import H2cPriorKnowledge
from replaydiff.corpora.protobuf import SchemaError, read_schema
from replaydiff.recorder.policy import PolicyError
from replaydiff.recorder.pseudonym import PseudonymKeyError
from replaydiff.recorder.retries import DEFAULT_RETRY_WINDOW_S, RetryTagger
from replaydiff.recorder.sanitize import Sanitizer
from replaydiff.recorder.sessions import DEFAULT_SESSION_GAP_S, SESSION_BY_CHOICES, SessionGrouper

FLUSH_TICK_S = 0.5
"""The timer period and the writer's flush interval: a record reaches disk within two ticks, one second."""

_RECORDED = "replaydiff_recorded"
"""Flow metadata mark, so a flow that gets both `response` and `error` is written once."""

logger = logging.getLogger(__name__)


class Recorder:
    def __init__(self, *, on_recording: Callable[[], None] | None = None) -> None:
        """`on_recording` is called once the corpus is open and the proxy listens (`replaydiff record` announces
        its address there). A callback rather than an addon of its own: mitmproxy passes every hook of every
        flow through each addon in its chain, and even an idle one costs the proxy a few percent more CPU per
        request (`bench/recorder_overhead.py`)."""
        self._on_recording = on_recording
        self.sanitizer = Sanitizer()
        self.retries = RetryTagger()
        self.sessions = SessionGrouper(self.sanitizer.key)
        self.max_body = DEFAULT_MAX_BODY
        """`replaydiff_max_body`, kept here by `configure`: an option lookup on every flow costs more than it seems."""
        self.writer: CorpusWriter | None = None
        self.failure: str | None = None
        """Why the corpus could not be written; once set, the writer is left alone and traffic still flows."""
        self.unrecorded = 0
        """Exchanges that passed through after a write failure."""
        self.passed_through: Counter[str] = Counter()
        """Traffic that is not HTTP request/response (`websocket`, `tcp`): forwarded and counted, never recorded."""
        self._closed = False
        self._epoch: float | None = None
        self._flusher: asyncio.Task[None] | None = None

    @property
    def written(self) -> int:
        """Exchanges in the corpus, also after `done` closed it."""
        return self.writer.count if self.writer else 0

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "replaydiff_output",
            str | None,  # type: ignore[arg-type]  # mitmproxy annotates `type` but takes Optional types
            None,
            "Path of the corpus (NAME.jsonl.zst) the recorder writes. Required. "
            "An existing file is replaced; its directory must exist.",
        )
        loader.add_option(
            "replaydiff_source",
            str,
            "mitmproxy",
            "Free text stored as `source` in the corpus header: how and where the traffic was captured.",
        )
        loader.add_option(
            "replaydiff_policy",
            str | None,  # type: ignore[arg-type]
            None,
            "A sanitization policy file (TOML). Its rules run before the built-in safe defaults.",
        )
        loader.add_option(
            "replaydiff_default_sanitize",
            bool,
            True,
            "Apply the built-in safe sanitization defaults. Turning this off leaves only the policy file's rules.",
        )
        loader.add_option(
            "replaydiff_pseudonym_key_file",
            str | None,  # type: ignore[arg-type]
            None,
            "File holding the HMAC key for `pseudonymize` rules. Without it, $REPLAYDIFF_PSEUDONYM_KEY, "
            "else a random key for this corpus only. The key is never written to the corpus.",
        )
        loader.add_option(
            "replaydiff_proto_descriptor_set",
            str | None,  # type: ignore[arg-type]
            None,
            "gRPC schema (protoc -o FILE --include_imports): gRPC messages are sanitized by field name. "
            "Without a schema, by pattern on their string fields.",
        )
        loader.add_option(
            "replaydiff_proto",
            Sequence[str],  # type: ignore[arg-type]
            [],
            "gRPC schema as .proto files, compiled with grpcio-tools, instead of replaydiff_proto_descriptor_set.",
        )
        loader.add_option(
            "replaydiff_max_body",
            int,
            DEFAULT_MAX_BODY,
            "Bodies longer than this many bytes are stored cut to this length and the exchange tagged `truncated`.",
        )
        loader.add_option(
            "replaydiff_retry_window",
            float,
            DEFAULT_RETRY_WINDOW_S,
            "Seconds after a failed request (error, 408, 429, 5xx) within which the same request from the same "
            "client is tagged as its retry (`retry_of`, `attempt`). 0 turns tagging off.",
        )
        loader.add_option(
            "replaydiff_session_by",
            str,
            "client",
            "How exchanges are grouped into sessions (kept in order, with what they learned, at replay): "
            "`client` by the client's credentials or session cookie (pseudonymized), else its address and "
            "User-Agent; `connection`: one session per client connection.",
            choices=SESSION_BY_CHOICES,
        )
        loader.add_option(
            "replaydiff_session_gap",
            float,
            DEFAULT_SESSION_GAP_S,
            "Seconds a client may stay quiet before its next request starts a new session (`client` grouping).",
        )

        loader.add_option(
            "replaydiff_inject_traceparent",
            bool,
            False,
            "Give a request that carries no W3C traceparent one (a random trace id) before it reaches the service, "
            "so the calls it makes to its dependencies (seen by `replaydiff tap`) join it exactly.",
        )

    def configure(self, updated: set[str]) -> None:
        sanitizer_options = {
            "replaydiff_policy",
            "replaydiff_default_sanitize",
            "replaydiff_pseudonym_key_file",
            "replaydiff_proto_descriptor_set",
            "replaydiff_proto",
        }
        if updated & sanitizer_options:
            self._refuse_while_recording("the sanitization options")
            self.sanitizer = _sanitizer_from_options()
        if updated & (sanitizer_options | {"replaydiff_session_by", "replaydiff_session_gap"}):
            self._refuse_while_recording("the session options")
            self.sessions = _sessions_from_options(self.sanitizer)
        if "replaydiff_retry_window" in updated:
            if ctx.options.replaydiff_retry_window < 0:
                raise exceptions.OptionsError("replaydiff_retry_window must be 0 (off) or a number of seconds")
            self.retries = RetryTagger(window_s=ctx.options.replaydiff_retry_window)
        if "replaydiff_max_body" in updated:
            if ctx.options.replaydiff_max_body < 0:
                raise exceptions.OptionsError("replaydiff_max_body must be a number of bytes, 0 or more")
            self.max_body = ctx.options.replaydiff_max_body
        # An unset output is only refused in `running`: mitmproxy re-runs `configure` with the old
        # values to roll back a refused update, and "required" would then hide the real error.
        if "replaydiff_output" not in updated or ctx.options.replaydiff_output is None:
            return
        self._refuse_while_recording("replaydiff_output")
        _check_output(ctx.options.replaydiff_output)

    def _refuse_while_recording(self, what: str) -> None:
        if self.writer is not None:
            raise exceptions.OptionsError(
                f"{what} cannot change while recording to {self.writer.path}; restart the recorder"
            )

    def running(self) -> None:
        if not ctx.options.replaydiff_output:
            # Logged, not raised: mitmproxy's startup check then exits with this message instead of a traceback.
            logger.error("replaydiff_output is required: set it to the path of the corpus to write")
            return
        try:
            self.writer = CorpusWriter(
                _check_output(ctx.options.replaydiff_output),
                flush_interval=FLUSH_TICK_S,
                source=ctx.options.replaydiff_source,
                sanitizer=self.sanitizer.describe(),
            )
        except (exceptions.OptionsError, CorpusError) as exc:
            logger.error(str(exc))
            return
        except OSError as exc:  # e.g. a full disk while writing the header
            logger.error(f"corpus output {ctx.options.replaydiff_output}: cannot write ({exc.strerror or exc})")
            return
        self._flusher = asyncio.create_task(self._flush_periodically())
        if self._on_recording is not None:
            self._on_recording()

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self._epoch is None:
            self._epoch = flow.request.timestamp_start
        if ctx.options.replaydiff_inject_traceparent and not parse_traceparent(
            flow.request.headers.get("traceparent", "")
        )[0]:
            flow.request.headers["traceparent"] = f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is not None:
            flow.metadata[_RECORDED] = True  # the handshake opens a websocket: passed through, not recorded
            self.passed_through["websocket"] += 1
            return
        self._record(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        self.passed_through["tcp"] += 1

    async def done(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with suppress(asyncio.CancelledError):
                await self._flusher
        summary = {"sanitizer": self.sanitizer.summary(), "passed_through": dict(self.passed_through)}
        if self._epoch is not None:  # the wall clock of start_us 0: a tap's calls line up with it (corpora.windows)
            summary["epoch_unix_us"] = round(self._epoch * 1_000_000)
        self._with_writer(lambda writer: writer.close(**summary))
        self._closed = True
        if self.failure:
            print(
                f"replaydiff: error: {self.failure}; {self.unrecorded} later exchanges passed through unrecorded",
                file=sys.stderr,
                flush=True,
            )

    def _record(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(_RECORDED):
            return
        flow.metadata[_RECORDED] = True
        if self.failure:
            self.unrecorded += 1
            return
        epoch = self._epoch if self._epoch is not None else flow.request.timestamp_start
        exchange = exchange_from_flow(flow, epoch=epoch)
        peer = flow.client_conn.peername
        exchange = self.sessions.assign(exchange, client_address=peer[0] if peer else None)
        exchange = self.sanitizer.exchange(exchange)
        if trace_id := parse_traceparent(flow.request.headers.get("traceparent", ""))[0]:
            # after sanitizing: a random trace id is no secret, but a value pattern could take it for one
            exchange.tags[TRACE_TAG] = trace_id
        exchange = self.retries.tag(truncated(exchange, self.max_body))
        self._with_writer(lambda writer: writer.write(exchange))

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_TICK_S)
            self._with_writer(CorpusWriter.flush_if_due)

    def _with_writer(self, operation: Callable[[CorpusWriter], None]) -> None:
        """Runs a writer operation unless there is no open, healthy writer; a failure stops recording, not traffic."""
        writer = self.writer
        if writer is None or self._closed or self.failure:
            return
        try:
            operation(writer)
        except OSError as exc:
            self.failure = f"{writer.path}: cannot write the corpus ({exc.strerror or exc}); recording stopped"
            print(f"replaydiff: error: {self.failure}, traffic still flows", file=sys.stderr, flush=True)


def _sanitizer_from_options() -> Sanitizer:
    key_file = ctx.options.replaydiff_pseudonym_key_file
    policy_file = ctx.options.replaydiff_policy
    descriptor_set = ctx.options.replaydiff_proto_descriptor_set
    try:
        return Sanitizer.configured(
            policy_file=Path(policy_file) if policy_file else None,
            defaults=ctx.options.replaydiff_default_sanitize,
            key_file=Path(key_file) if key_file else None,
            grpc_schema=read_schema(
                Path(descriptor_set) if descriptor_set else None, [Path(proto) for proto in ctx.options.replaydiff_proto]
            ),
        )
    except (PolicyError, PseudonymKeyError, SchemaError) as exc:
        raise exceptions.OptionsError(str(exc)) from None


def _sessions_from_options(sanitizer: Sanitizer) -> SessionGrouper:
    if ctx.options.replaydiff_session_gap <= 0:
        raise exceptions.OptionsError("replaydiff_session_gap must be a number of seconds above 0")
    return SessionGrouper(
        sanitizer.key, by=ctx.options.replaydiff_session_by, gap_s=ctx.options.replaydiff_session_gap
    )


def _check_output(value: str) -> Path:
    """The precise reason a corpus path is unusable, before any traffic flows."""
    path = Path(value).expanduser()
    directory = path.parent
    if path.is_dir():
        raise exceptions.OptionsError(f"corpus output {value} is a directory; give a file name")
    if not directory.is_dir():
        raise exceptions.OptionsError(f"corpus output {value}: directory {directory} does not exist; create it first")
    if not os.access(directory, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise exceptions.OptionsError(f"corpus output {value}: not writable; choose another path")
    return path


addons = [Recorder(), H2cPriorKnowledge()]
