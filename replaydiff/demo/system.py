"""`DemoSystem`: the demo services in a subprocess of their own, optionally with a tap in front of inventory.

Why a subprocess: the replayer measures latency, and services sharing its
event loop (or its GIL) would add the replayer's own load to every timing.
With `faults`, the shops reach inventory through `replaydiff tap`, which logs
every call and injects the seeded faults, so retry policies can be compared.
"""

from __future__ import annotations

import json
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO

from replaydiff.demo.services import READ_VIA_FROM_STDIN, DemoUrls

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
DEMO_FAULTS = Path(__file__).parent / "faults.toml"


class DemoSystemError(RuntimeError):
    """The demo services did not start; the message says what they did instead."""


class DemoSystem:
    """Starts `python -m replaydiff.demo.services` on enter and stops it (SIGTERM, then SIGKILL) on exit.

        with DemoSystem() as demo:
            httpx.get(demo.baseline + "/api/health")
    """

    def __init__(
        self,
        *,
        faults: Path | None = None,
        start_timeout: float = START_TIMEOUT_S,
        stop_timeout: float = STOP_TIMEOUT_S,
    ) -> None:
        self.faults = faults
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._tap: subprocess.Popen[bytes] | None = None
        self._scratch: Path | None = None
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

    @property
    def upstream_log(self) -> Path | None:
        """The tap's log of the shops' calls to inventory (with `faults` only)."""
        return self._scratch / "upstream.jsonl.zst" if self._scratch and self._tap else None

    def start(self) -> DemoUrls:
        """With faults, the tap starts once inventory's address is known, on a port it binds itself, and the
        shops are told its address after that: no port is handed out before it is bound."""
        via = ["--inventory-via", READ_VIA_FROM_STDIN] if self.faults else []
        self._process = subprocess.Popen(
            [sys.executable, "-m", "replaydiff.demo.services", *via], stdout=subprocess.PIPE,
            stdin=subprocess.PIPE if self.faults else subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert self._process.stdout is not None
            self._urls = _parse_urls(self._first_line(self._process, self._process.stdout, "demo services"))
            if self.faults:
                self._route_inventory_through(self._start_tap(self._urls.inventory))
        except BaseException:
            self.stop()
            raise
        return self._urls

    def _start_tap(self, inventory: str) -> str:
        """The tap's listening URL."""
        assert self.faults is not None
        self._scratch = Path(tempfile.mkdtemp(prefix="replaydiff-demo-tap-"))
        self._tap = subprocess.Popen(
            [sys.executable, "-m", "replaydiff.cli", "tap", "--route", f"inventory={inventory}",
             "-o", str(self._scratch / "upstream.jsonl.zst"), "--faults", str(self.faults),
             "--confdir", str(self._scratch / "mitmproxy")],
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert self._tap.stderr is not None
        line = self._first_line(self._tap, self._tap.stderr, "the demo's tap").decode(errors="replace")
        if not (listening := re.search(r"inventory (http://\S+?);", line)):
            raise DemoSystemError(f"the demo's tap said {line.strip()!r} instead of where it listens")
        return listening.group(1)

    def _route_inventory_through(self, tap: str) -> None:
        assert self._process is not None and self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(f"{tap}\n".encode())
        self._process.stdin.flush()
        answer = self._first_line(self._process, self._process.stdout, "demo services")
        if json.loads(answer).get("inventory_via") != tap:
            raise DemoSystemError(f"demo services answered {answer[:200]!r} instead of routing inventory via {tap}")

    def _first_line(self, process: subprocess.Popen[bytes], stream: IO[bytes], what: str) -> bytes:
        """A process prints one line once it listens; waiting longer than that means it is stuck."""
        with selectors.DefaultSelector() as selector:
            selector.register(stream, selectors.EVENT_READ)
            if not selector.select(self.start_timeout):
                raise DemoSystemError(f"{what} printed nothing within {self.start_timeout:g} s")
        line = stream.readline()
        if not line:
            code = process.wait()
            raise DemoSystemError(f"{what} exited with code {code} before listening (see their stderr above)")
        return line

    def stop(self) -> None:
        """The tap first, so its log is closed; then the services."""
        tap, self._tap = self._tap, None
        if tap is not None:
            self._terminate(tap)
        process, self._process, self._urls = self._process, None, None
        if process is not None:
            self.returncode = self._terminate(process)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _terminate(self, process: subprocess.Popen[bytes]) -> int:
        """SIGTERM first so the process closes its connections and files; SIGKILL only if it hangs."""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream:
                stream.close()
        return process.returncode

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
