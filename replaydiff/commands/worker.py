"""`replaydiff worker --master HOST:PORT`: lend this machine to a `replay --engine locust` run elsewhere.

The worker needs neither the corpus nor the results file: the master streams
it the requests of its share of sessions and receives its records. It runs as
a locust worker process of its own, because locust's gevent must never patch
this process.
"""

from __future__ import annotations

import subprocess

import click

from replaydiff.replayer.locust_engine import worker_command
from replaydiff.errors import EXIT_INTERRUPTED


def master_address(text: str, *, option: str, example: str) -> tuple[str, int]:
    """The locust master's HOST:PORT, as `worker --master` and `replay --master-bind` take it."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{text!r} is not HOST:PORT, e.g. {example}", param_hint=option)
    return host.strip("[]"), int(port)


@click.command()
@click.option("--master", "master", required=True, metavar="HOST:PORT",
              help="The master of `replaydiff replay --engine locust` (its --master-bind address and port).")
def worker(master: str) -> None:
    """Join a locust replay as one more worker; exits when the master finishes the replay."""
    host, port = master_address(master, option="--master", example="10.0.0.5:5557")
    process = subprocess.Popen(worker_command(host, port), stdin=subprocess.DEVNULL)
    try:
        raise SystemExit(process.wait())
    except KeyboardInterrupt:
        # From a terminal the worker got the same SIGINT; a SIGTERM (or `kill -INT`) came to this process alone.
        # Either way it says goodbye to its master before it exits: locust quits cleanly on SIGTERM.
        process.terminate()
        process.wait()
        raise SystemExit(EXIT_INTERRUPTED) from None
