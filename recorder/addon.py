"""The recorder as a mitmproxy addon: every finished flow becomes one sanitized exchange in a corpus.

Runs inside `replaydiff record` and, unchanged, in plain mitmproxy:

    mitmdump -s recorder/addon.py --set replaydiff_output=shop.jsonl.zst \\
        --set confdir=.replaydiff/mitmproxy --mode reverse:http://127.0.0.1:8000

(`confdir` keeps mitmproxy away from the user's ~/.mitmproxy, as `replaydiff record` does.)

Failure policy, chosen on purpose (as mitmproxy's own `save` addon does): if
the corpus cannot be written, the recorder says so in one line on stderr
(printed, not logged, so it shows whatever the host's log settings) and shuts
the proxy down rather than let traffic through unrecorded.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from corpora import CorpusError, CorpusWriter
from recorder.capture import exchange_from_flow
from recorder.sanitize import Sanitizer

FLUSH_TICK_S = 0.5
"""The timer period and the writer's flush interval: a record reaches disk within two ticks, one second."""

_RECORDED = "replaydiff_recorded"
"""Flow metadata mark, so a flow that gets both `response` and `error` is written once."""

logger = logging.getLogger(__name__)


class Recorder:
    def __init__(self) -> None:
        self.sanitizer = Sanitizer()
        self.writer: CorpusWriter | None = None
        self.failure: str | None = None
        """Why the corpus could not be written; once set, the writer is left alone."""
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

    def configure(self, updated: set[str]) -> None:
        # An unset output is only refused in `running`: mitmproxy re-runs `configure` with the old
        # values to roll back a refused update, and "required" would then hide the real error.
        if "replaydiff_output" not in updated or ctx.options.replaydiff_output is None:
            return
        if self.writer is not None:
            raise exceptions.OptionsError(
                f"replaydiff_output cannot change while recording to {self.writer.path}; restart the recorder"
            )
        _check_output(ctx.options.replaydiff_output)

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

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self._epoch is None:
            self._epoch = flow.request.timestamp_start

    def response(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    async def done(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with suppress(asyncio.CancelledError):
                await self._flusher
        self._with_writer(lambda writer: writer.close(sanitizer=self.sanitizer.summary()))
        self._closed = True

    def _record(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.get(_RECORDED):
            return
        flow.metadata[_RECORDED] = True
        epoch = self._epoch if self._epoch is not None else flow.request.timestamp_start
        exchange = self.sanitizer.exchange(exchange_from_flow(flow, epoch=epoch))
        self._with_writer(lambda writer: writer.write(exchange))

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_TICK_S)
            self._with_writer(CorpusWriter.flush_if_due)

    def _with_writer(self, operation: Callable[[CorpusWriter], None]) -> None:
        """Runs a writer operation unless there is no open, healthy writer; a failure stops the proxy."""
        writer = self.writer
        if writer is None or self._closed or self.failure:
            return
        try:
            operation(writer)
        except OSError as exc:
            self.failure = f"{writer.path}: cannot write the corpus ({exc.strerror or exc}); recording stopped"
            print(f"replaydiff: error: {self.failure}", file=sys.stderr, flush=True)
            ctx.master.shutdown()


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


addons = [Recorder()]
