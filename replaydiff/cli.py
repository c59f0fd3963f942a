"""`replaydiff`: one command per step of the pipeline, plus `run` and `demo` that compose them.

Exit codes: 0 same, 1 divergent, 2 usage or input error. A user mistake is
reported as one line on stderr; a traceback means a bug in replaydiff.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

import click

from corpora import CorpusError
from replaydiff.commands import convert, corpus, demo, diffing, fuzz, nightly, record, replay, tap, worker
from replayer.targets import ReplayError
from replaydiff.errors import EXIT_INTERRUPTED, EXIT_USAGE, UserError
from replaydiff.replaying import ReplayInterrupted


class _Group(click.Group):
    """Turns expected failures into one-line messages with exit code 2."""

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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="replaydiff")
def main() -> None:
    """Record HTTP traffic, replay it through a baseline and a candidate, and report how they diverge."""
    warnings.showwarning = _show_warning  # type: ignore[assignment]


for command in (
    record.record,
    corpus.inspect,
    convert.import_file,
    convert.export_har,
    replay.replay,
    diffing.diff,
    replay.run,
    demo.demo,
    nightly.nightly,
    nightly.history,
    nightly.accept,
    tap.tap,
    fuzz.fuzz,
    worker.worker,
):
    main.add_command(command)


if __name__ == "__main__":
    sys.exit(main())
