"""Suite tables as command-line options: a suite says what `replaydiff replay` and `diff` would be told.

A `[replay]`, `[diff]` or `[targets.NAME]` table holds the long options of
those commands (`speed = 4`, `fail-on = ["body", "status"]`, `routing-key =
"nightly"`; `_` and `-` are alike). They are turned into arguments and parsed
by the very click declarations the commands use, so a suite accepts exactly
what the command line accepts, with the same defaults and the same checks,
and an option added to `replay` works in a suite without a change here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from replaydiff.commands.diffing import DiffSettings, diff_options
from replaydiff.commands.replay import build_job, replay_options
from replaydiff.errors import UserError
from replaydiff.replaying import ReplayJob
from replaydiff.replayer.targets import ReplayError

TARGET_KEYS = frozenset(
    {"baseline", "candidate", "baseline2", "routing-key", "baseline-header", "candidate-header", "host-header",
     "allow-host", "header", "identities", "jwt-key"}
)  # fmt: skip
"""What a `[targets.NAME]` table may set: where the requests go, the headers that route them there, and how
they authenticate (`header` values name environment variables for their secrets: see `suite`)."""

RUN_OWNED = frozenset({"corpus", "output", "upstream-log", "json", "junit", "html"})
"""Files of one replay or one report: the nightly run names them in its run directory."""


T = TypeVar("T")


class SuiteError(UserError):
    """A suite the nightly run cannot use; the message names the file and the key."""


@click.command()
@replay_options
def _replay_job(**params: Any) -> ReplayJob:
    return build_job(**params)


@click.command()
@diff_options()
def _diff_settings(diff_settings: DiffSettings) -> DiffSettings:
    return diff_settings


def option_names(command: click.Command) -> dict[str, click.Option]:
    """Long option name without dashes → option, for every option a suite may set."""
    names = {}
    for param in command.params:
        if isinstance(param, click.Option):
            long = max(param.opts, key=len).lstrip("-")
            if long not in RUN_OWNED:
                names[long] = param
    return names


REPLAY_KEYS = frozenset(option_names(_replay_job)) - TARGET_KEYS
DIFF_KEYS = frozenset(option_names(_diff_settings))


def replay_job(corpus: Path, output: Path, table: Mapping[str, Any], *, base: Path, where: str) -> ReplayJob:
    """`table`: the merged `[replay]` and target keys; relative file options are taken from `base`."""
    args = [str(corpus), "--output", str(output), *_arguments(_replay_job, table, base=base, where=where)]
    try:
        return _parse(_replay_job, args, where, ReplayJob)
    except ReplayError as exc:  # a target URL that is not one
        raise SuiteError(f"{where}: {exc}") from None


def diff_settings(table: Mapping[str, Any], *, base: Path, where: str) -> DiffSettings:
    return _parse(_diff_settings, _arguments(_diff_settings, table, base=base, where=where), where, DiffSettings)


def checked(table: Any, allowed: frozenset[str], where: str) -> dict[str, Any]:
    """The table with its keys spelled as options (`fail_on` → `fail-on`), all of them in `allowed`.

    A typo is an error, not a silently ignored setting.
    """
    if not isinstance(table, dict):
        raise SuiteError(f"{where}: must be a table, got {table!r}")
    for key in table:
        if key.replace("_", "-") not in allowed:
            raise SuiteError(f"{where}: unknown key `{key}`; known: {', '.join(sorted(allowed))}")
    return {key.replace("_", "-"): value for key, value in table.items()}


def _arguments(command: click.Command, table: Mapping[str, Any], *, base: Path, where: str) -> list[str]:
    options = option_names(command)
    args: list[str] = []
    for key, value in table.items():
        option = options[key]
        flag = max(option.opts, key=len)
        if option.is_flag:
            if not isinstance(value, bool):
                raise SuiteError(f"{where}: `{key}` must be true or false, got {value!r}")
            args += [flag] if value else []
        elif option.multiple:
            args += [part for item in _listed(value, key, where) for part in (flag, _text(option, item, base))]
        else:
            joined = ",".join(_listed(value, key, where)) if isinstance(value, list) else value
            args += [flag, _text(option, joined, base)]
    return args


def _listed(value: Any, key: str, where: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str | int | float) and not isinstance(item, bool) for item in items):
        raise SuiteError(f"{where}: `{key}` must be a string or a list of strings, got {value!r}")
    return [str(item) for item in items]


def _text(option: click.Option, value: Any, base: Path) -> str:
    """A relative path in a suite is relative to the suite file, wherever the run starts."""
    if isinstance(option.type, click.Path) and isinstance(value, str):
        return str(base / value)
    return str(value)


def _parse(command: click.Command, args: list[str], where: str, kind: type[T]) -> T:
    try:
        parsed = command.main(args, prog_name="suite", standalone_mode=False)
    except click.BadParameter as exc:
        key = max(exc.param.opts, key=len).lstrip("-") if exc.param else "?"
        raise SuiteError(f"{where}: `{key}`: {exc.message}") from None
    except click.ClickException as exc:
        raise SuiteError(f"{where}: {exc.format_message()}") from None
    except UserError as exc:  # a rules or OpenAPI file the differ cannot use
        raise SuiteError(f"{where}: {exc}") from None
    assert isinstance(parsed, kind), f"{command.name} returned {parsed!r}"
    return parsed
