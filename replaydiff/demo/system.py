"""`DemoSystem`: the demo services in a subprocess of their own.

Why a subprocess: the replayer measures latency, and services sharing its
event loop (or its GIL) would add the replayer's own load to every timing.
"""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
import sys
from types import TracebackType

from replaydiff.demo.services import DemoUrls

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0


class DemoSystemError(RuntimeError):
    """The demo services did not start; the message says what they did instead."""


class DemoSystem:
    """Starts `python -m replaydiff.demo.services` on enter and stops it (SIGTERM, then SIGKILL) on exit.

        with DemoSystem() as demo:
            httpx.get(demo.baseline + "/api/health")
    """

    def __init__(self, *, start_timeout: float = START_TIMEOUT_S, stop_timeout: float = STOP_TIMEOUT_S) -> None:
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._urls: DemoUrls | None = None
        self.returncode: int | None = None
        """The services' exit code once stopped: 0 after a clean shutdown, negative if they had to be killed."""

    @property
    def urls(self) -> DemoUrls:
        if self._urls is None:
            raise DemoSystemError("the demo system is not running; use it as `with DemoSystem() as demo:`")
        return self._urls

    @property
    def inventory(self) -> str:
        return self.urls.inventory

    @property
    def baseline(self) -> str:
        return self.urls.baseline

    @property
    def candidate(self) -> str:
        return self.urls.candidate

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> DemoUrls:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "replaydiff.demo.services"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        try:
            self._urls = _parse_urls(self._first_line())
        except BaseException:
            self.stop()
            raise
        return self._urls

    def _first_line(self) -> bytes:
        """The services print their URLs once they listen; waiting longer than that means they are stuck."""
        assert self._process is not None and self._process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            if not selector.select(self.start_timeout):
                raise DemoSystemError(f"demo services printed no URLs within {self.start_timeout:g} s")
        line = self._process.stdout.readline()
        if not line:
            code = self._process.wait()
            raise DemoSystemError(f"demo services exited with code {code} before listening (see their stderr above)")
        return line

    def stop(self) -> None:
        """SIGTERM first so the services close their connections; SIGKILL only if they hang."""
        process, self._process, self._urls = self._process, None, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout:
            process.stdout.close()
        self.returncode = process.returncode

    def __enter__(self) -> DemoSystem:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def _parse_urls(line: bytes) -> DemoUrls:
    try:
        return DemoUrls(**json.loads(line))
    except (ValueError, TypeError) as exc:
        raise DemoSystemError(f"demo services printed {line[:200]!r} instead of their URLs ({exc})") from None
