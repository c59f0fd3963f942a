"""`replaydiff`: one command per step of the pipeline, plus `run` and `demo` that compose them.

Exit codes: 0 same, 1 divergent, 2 usage or input error. A user mistake is
reported as one line on stderr; a traceback means a bug in replaydiff.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import warnings
from types import FrameType
from typing import Any

import click

# Before grpc is first imported (a command may import it): gRPC's C core logs every failed TLS handshake on
# stderr at INFO level, where reflection's one-line note already says what failed. A user's own setting stays.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from replaydiff.corpora import CorpusError
from replaydiff.replayer.targets import ReplayError
from replaydiff.errors import EXIT_INTERRUPTED, EXIT_USAGE, UserError
from replaydiff.replaying import ReplayInterrupted


COMMANDS = {
    "record": ("record:record", "Record traffic through a proxy into a sanitized corpus."),
    "inspect": ("corpus:inspect", "Show what a corpus holds: exchanges, sessions, endpoints."),
    "corpus": ("curate:corpus", "Curate: stats, sample, dedup, minimize, merge, split, filter."),
    "import": ("convert:import_file", "Import a HAR, pcap or mitmproxy capture as a sanitized corpus."),
    "export": ("convert:export_har", "Export a corpus as a HAR 1.2 file."),
    "replay": ("replay:replay", "Replay a corpus through baseline, second baseline and candidate."),
    "diff": ("diffing:diff", "Report how the candidate diverges in a results file."),
    "run": ("replay:run", "Replay, then diff: exit 0 same, 1 divergent."),
    "demo": ("demo:demo", "Run the demo system; check it finds its planted divergences."),
    "nightly": ("nightly:nightly", "Replay and diff a suite's entries, judged by accepted divergences."),
    "history": ("nightly:history", "Trends per endpoint over the nightly runs."),
    "accept": ("nightly:accept", "Accept a divergence by its fingerprint, with a reason."),
    "tap": ("tap:tap", "Record and fault the calls a service makes to its dependencies."),
    "fuzz": ("fuzz:fuzz", "Send generated requests to the baseline and the candidate."),
    "worker": ("worker:worker", "Join a locust replay as one more worker."),
}
"""Command name → (`replaydiff.commands` module and attribute, its line in `replaydiff --help`). Imported when
used: the recorder's mitmproxy alone takes most of a second to import, which `replay`, `diff`, every forked
process and the list of commands need not pay."""


class _Group(click.Group):
    """Loads each command when it is used; turns expected failures into one-line messages with exit code 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        where, summary = COMMANDS[name]
        module, attribute = where.split(":")
        command = getattr(importlib.import_module(f"replaydiff.commands.{module}"), attribute)
        assert isinstance(command, click.Command)
        command.short_help = summary
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The list from the table, without importing every command (and mitmproxy with the recorder)."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, summary) for name, (_, summary) in COMMANDS.items()])

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (CorpusError, ReplayError, UserError) as exc:
            click.echo(f"replaydiff: error: {exc}", err=True)
            ctx.exit(EXIT_USAGE)
        except ReplayInterrupted as exc:
            click.echo(f"replaydiff: {exc}", err=True)
            ctx.exit(EXIT_INTERRUPTED)


def _show_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
    click.echo(f"replaydiff: warning: {message}", err=True)


def _terminated_as_interrupted(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (`timeout`, a cancelled CI job, a stopped container) ends a command as Ctrl-C does: through
    whatever handles SIGINT now (asyncio's, which cancels the replay so it closes its results, while a replay
    runs), or as a KeyboardInterrupt where nothing does (a job started with `&` ignores SIGINT, not SIGTERM).
    A handler that ignores SIGINT on purpose ignores SIGTERM with it (`replaydiff.sharded`)."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="replaydiff")
def main() -> None:
    """Record HTTP traffic, replay it through a baseline and a candidate, and report how they diverge."""
    warnings.showwarning = _show_warning  # type: ignore[assignment]
    signal.signal(signal.SIGTERM, _terminated_as_interrupted)


if __name__ == "__main__":
    sys.exit(main())
