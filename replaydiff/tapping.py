"""`replaydiff tap` as a child process for a run: started, awaited until it listens, stopped with its log closed.

A process of its own rather than a thread: mitmproxy runs its own event loop
and signal handlers, and the replayer measures latency, which a proxy sharing
its process would distort.
"""

from __future__ import annotations

import selectors
import signal
import subprocess
import sys
import time
from types import TracebackType

START_TIMEOUT_S = 30.0
"""Loading a large recording to mock from happens before the tap listens."""
STOP_TIMEOUT_S = 10.0
"""Closing the log of a long run takes a moment on a busy machine; killed, the tap leaves it without its end."""


class TapProcessError(RuntimeError):
    """The tap did not start; the message carries what it said instead (its one-line error)."""


class TapProcess:
    def __init__(self, arguments: list[str], *, start_timeout: float = START_TIMEOUT_S) -> None:
        """`arguments`: what follows `replaydiff tap` (routes, -o, --mock ...)."""
        self.arguments = arguments
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self.announced = ""
        self.farewell = ""
        """What the tap said when it stopped (its count of calls, and how the mock answered)."""

    def start(self) -> str:
        """Returns the tap's listening announcement."""
        self._process = subprocess.Popen(
            [sys.executable, "-m", "replaydiff.cli", "tap", *self.arguments],
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert self._process.stderr is not None
        deadline = time.monotonic() + self.start_timeout
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stderr, selectors.EVENT_READ)
            while True:
                if not selector.select(max(0.0, deadline - time.monotonic())):
                    self.stop()
                    raise TapProcessError(f"the tap did not listen within {self.start_timeout:g} s")
                line = self._process.stderr.readline().decode(errors="replace").strip()
                if not line.startswith("replaydiff: warning:"):
                    break
                print(line, file=sys.stderr, flush=True)  # e.g. a damaged recording: the user hears it, the tap goes on
        if "listening" not in line:
            self.stop()
            raise TapProcessError(line.removeprefix("replaydiff: error: ") or "the tap exited before listening")
        self.announced = line
        return line

    def stop(self) -> int | None:
        process, self._process = self._process, None
        if process is None:
            return None
        terminate(process, STOP_TIMEOUT_S)
        if process.stderr:
            said = process.stderr.read().decode(errors="replace").splitlines()
            self.farewell = next((line for line in reversed(said) if "tap wrote" in line), "")
            process.stderr.close()
        return process.returncode

    def __enter__(self) -> TapProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def terminate(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    """SIGTERM first so the process closes its connections and files; SIGKILL only if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
