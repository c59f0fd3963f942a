"""The live view of a running session: examples run, divergences found, the endpoint being fuzzed."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class LiveView:
    """A `Progress` for `FuzzSession`, drawn on `console` (stderr) while the session runs."""

    def __init__(self, console: Console) -> None:
        self._signatures: set[str] = set()
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("fuzz [bold]{task.fields[endpoint]}[/]"),
            TextColumn("examples {task.completed:.0f}"),
            TextColumn("divergences {task.fields[divergences]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task = self._progress.add_task("fuzz", total=None, endpoint="", divergences=0)

    def endpoint(self, endpoint: str) -> None:
        self._progress.update(self._task, endpoint=endpoint.replace("[", r"\["))

    def example(self) -> None:
        self._progress.advance(self._task)

    def divergence(self, signature: str) -> None:
        self._signatures.add(signature)
        self._progress.update(self._task, divergences=len(self._signatures))

    def __enter__(self) -> LiveView:
        self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._progress.stop()


class Quiet:
    """No view: for the pytest helper, where pytest owns the terminal."""

    def endpoint(self, endpoint: str) -> None:
        pass

    def example(self) -> None:
        pass

    def divergence(self, signature: str) -> None:
        pass
