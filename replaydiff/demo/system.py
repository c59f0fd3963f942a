"""`DemoSystem`: the demo services in a subprocess of their own, optionally with a tap in front of inventory.

Why a subprocess: the replayer measures latency, and services sharing its
event loop (or its GIL) would add the replayer's own load to every timing.
With `faults`, the shops reach inventory through `replaydiff tap`, which logs
every call and injects the seeded faults, so retry policies can be compared.
With `mock` (a recorded upstream log), that tap answers from the recording and
no inventory runs at all; `tapped` puts a plain (recording) tap in between.
With `catalog`, the gRPC catalog (baseline and candidate) runs too, in a process of its own.
"""

from __future__ import annotations

import json
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO

from replaydiff.corpora.ports import free_port
from replaydiff.demo.services import READ_VIA_FROM_STDIN, DemoUrls
from replaydiff.tapping import TapProcess, TapProcessError, terminate

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
DEMO_FAULTS = Path(__file__).parent / "faults.toml"
DEMO_UPSTREAM = Path(__file__).parent / "demo-shop.upstream.jsonl.zst"
"""The baseline shop's calls to inventory while the bundled corpus was replayed once: what `demo --mock`
answers from (`python -m replaydiff.demo.upstream` writes it; `make corpus` runs that)."""


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
        mock: Path | None = None,
        tapped: bool = False,
        keep_upstream_log: Path | None = None,
        catalog: bool = False,
        start_timeout: float = START_TIMEOUT_S,
        stop_timeout: float = STOP_TIMEOUT_S,
    ) -> None:
        self.faults = faults
        self.mock = mock
        self.tapped = tapped or faults is not None or mock is not None or keep_upstream_log is not None
        self.keep_upstream_log = keep_upstream_log
        """Where the tap's log is copied once the tap has closed it (the scratch directory goes on stop)."""
        self._farewell = ""
        self.catalog = catalog
        self._catalog_process: subprocess.Popen[bytes] | None = None
        self._catalog_urls: dict[str, str] = {}
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._tap: TapProcess | None = None
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
    def catalog_baseline(self) -> str:
        """The gRPC catalog's baseline (with `catalog` only)."""
        return self._catalog_urls["baseline"]

    @property
    def catalog_candidate(self) -> str:
        return self._catalog_urls["candidate"]

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def upstream_log(self) -> Path | None:
        """The tap's log of the shops' calls to inventory (with `faults` only)."""
        return self._scratch / "upstream.jsonl.zst" if self._scratch and self._tap else None

    @property
    def tap_farewell(self) -> str:
        """What the tap said when it stopped: its count of calls (and, mocking, how it answered them)."""
        return self._farewell

    def start(self) -> DemoUrls:
        """With a tap, the tap starts once inventory's address is known, on a port it binds itself, and the
        shops are told its address after that: no port is handed out before it is bound."""
        self._farewell = ""
        via = ["--inventory-via", READ_VIA_FROM_STDIN] if self.tapped else []
        if self.mock is not None:
            via.append("--without-inventory")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "replaydiff.demo.services", *via], stdout=subprocess.PIPE,
            stdin=subprocess.PIPE if self.tapped else subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert self._process.stdout is not None
            self._urls = _parse_urls(self._first_line(self._process, self._process.stdout, "demo services"))
            if self.tapped:
                self._route_inventory_through(self._start_tap(self._urls.inventory))
            if self.catalog:
                self._start_catalog()
        except BaseException:
            self.stop()
            raise
        return self._urls

    def _start_tap(self, inventory: str) -> str:
        """The tap's listening URL. Mocking, no inventory runs: the route names no upstream (`inventory=@PORT`),
        and the mock-only route needs its port up front."""
        self._scratch = Path(tempfile.mkdtemp(prefix="replaydiff-demo-tap-"))
        route = f"inventory={inventory}" if inventory else f"inventory=@{free_port()}"
        arguments = ["--route", route, "-o", str(self._scratch / "upstream.jsonl.zst"),
                     "--confdir", str(self._scratch / "mitmproxy")]  # fmt: skip
        if self.faults is not None:
            arguments += ["--faults", str(self.faults)]
        if self.keep_upstream_log is None:
            arguments.append("--outcomes-only")  # a replay's tap: the calls' bodies would only cost time
        if self.mock is not None:
            arguments += ["--mock", str(self.mock)]
        self._tap = TapProcess(arguments, start_timeout=max(self.start_timeout, 30.0))
        try:
            line = self._tap.start()
        except TapProcessError as exc:
            raise DemoSystemError(f"the demo's tap did not start: {exc}") from None
        if not (listening := re.search(r"inventory (http://\S+?);", line)):
            raise DemoSystemError(f"the demo's tap said {line.strip()!r} instead of where it listens")
        return listening.group(1)

    def _start_catalog(self) -> None:
        """`python -m replaydiff.demo.grpc_catalog` prints its two URLs as one JSON line once both listen."""
        self._catalog_process = subprocess.Popen(
            [sys.executable, "-m", "replaydiff.demo.grpc_catalog"], stdout=subprocess.PIPE, stdin=subprocess.PIPE
        )
        assert self._catalog_process.stdout is not None
        line = self._first_line(self._catalog_process, self._catalog_process.stdout, "the gRPC catalog")
        try:
            self._catalog_urls = {key: str(json.loads(line)[key]) for key in ("baseline", "candidate")}
        except (ValueError, KeyError, TypeError) as exc:
            raise DemoSystemError(f"the gRPC catalog printed {line[:200]!r} instead of its URLs ({exc})") from None

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
            tap.stop()
            self._farewell = tap.farewell
            if self.keep_upstream_log is not None and self._scratch is not None:
                shutil.copyfile(self._scratch / "upstream.jsonl.zst", self.keep_upstream_log)
        process, self._process, self._urls = self._process, None, None
        if process is not None:
            self.returncode = self._terminate(process)
        catalog, self._catalog_process = self._catalog_process, None
        if catalog is not None:
            self._terminate(catalog)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def _terminate(self, process: subprocess.Popen[bytes]) -> int:
        """Terminated (`tapping.terminate`), then its pipes closed."""
        terminate(process, self.stop_timeout)
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
