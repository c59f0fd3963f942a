"""`replaydiff --help`, the first thing a user runs: every command listed with its line, none imported for it."""

from __future__ import annotations

import subprocess
import sys

import click

from replaydiff.cli import COMMANDS, main

HEAVY = ("replaydiff.commands.", "mitmproxy.addons", "mitmproxy.tools", "hypothesis", "grpc", "locust")
"""What a command brings in; mitmproxy's encoding helpers (`mitmproxy.net`), which corpora use, are light."""
LISTED_MODULES = f"""
import sys
from replaydiff.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
print("imported:", sorted(m for m in sys.modules if m.startswith({HEAVY!r})))
"""


def _listed(*arguments: str) -> list[list[str]]:
    """The (name, line) rows under "Commands:" of `replaydiff ARGUMENTS --help` at 80 columns."""
    result = subprocess.run([sys.executable, "-m", "replaydiff.cli", *arguments, "--help"], capture_output=True,
                            text=True, env={"COLUMNS": "80", "PATH": ""})  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [line.split(None, 1) for line in result.stdout.split("Commands:", 1)[1].splitlines() if line.strip()]


def test_the_help_lists_every_command_with_its_line() -> None:
    assert _listed() == [[name, summary] for name, (_, summary) in COMMANDS.items()]  # one line each at 80 columns


def test_listing_the_commands_imports_none_of_them() -> None:
    """Importing them all (mitmproxy with the recorder) made `replaydiff --help` take 1.8 s."""
    result = subprocess.run([sys.executable, "-c", LISTED_MODULES], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "imported: []"


def test_every_listed_command_is_a_command_whose_short_help_is_its_line() -> None:
    context = click.Context(main)
    for name, (_, summary) in COMMANDS.items():
        command = main.get_command(context, name)
        assert isinstance(command, click.Command), name
        assert command.get_short_help_str(limit=200) == summary


def test_the_corpus_commands_are_listed_each_on_one_whole_line() -> None:
    """Click cuts a docstring's first sentence to fit, mid-phrase; each curation command has a line of its own."""
    listed = _listed("corpus")
    assert [name for name, _ in listed] == ["dedup", "filter", "merge", "minimize", "sample", "split", "stats"]
    assert not [line for _, line in listed if line.endswith("...")]
