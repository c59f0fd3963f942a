"""`--ca-cert` and `--insecure`: how a command trusts https targets, for every connection it makes to them
(the replay, confirmation resends, fuzzing, gRPC server reflection)."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from replaydiff.errors import UserError

F = TypeVar("F", bound=Callable[..., object])


def check_ca_bundle(path: Path | str) -> None:
    """A file that is not a PEM bundle of CA certificates is one line now, not a traceback (or a failure per
    connection) later."""
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise UserError(f"--ca-cert {path}: not a readable PEM bundle of CA certificates ({exc})") from None


def _checked_ca_bundle(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        check_ca_bundle(value)
    return value


CA_CERT = click.option("--ca-cert", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
                       callback=_checked_ca_bundle, help="Trust this CA bundle for https targets.")  # fmt: skip
INSECURE = click.option("--insecure", is_flag=True, help="Do not verify https certificates of the targets.")


def tls_options(command: F) -> F:
    """Both options, passed as `ca_cert` and `insecure`."""
    return CA_CERT(INSECURE(command))
