"""`--ca-cert` and `--insecure`: how a command trusts https targets, for every connection it makes to them
(the replay, confirmation resends, fuzzing, gRPC server reflection)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])

CA_CERT = click.option("--ca-cert", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
                       help="Trust this CA bundle for https targets.")  # fmt: skip
INSECURE = click.option("--insecure", is_flag=True, help="Do not verify https certificates of the targets.")


def tls_options(command: F) -> F:
    """Both options, passed as `ca_cert` and `insecure`."""
    return CA_CERT(INSECURE(command))
