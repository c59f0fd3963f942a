"""`replaydiff import` and `replaydiff export`: HAR 1.2 in and out of corpora."""

from __future__ import annotations

from pathlib import Path

import click

from recorder import har
from replaydiff.errors import UserError


@click.command("import")
@click.argument("har_file", metavar="FILE.har", type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", required=True, type=click.Path(path_type=Path), help="The corpus to write (NAME.jsonl.zst)."
)
def import_har(har_file: Path, output: Path) -> None:
    """Import a HAR 1.2 file (e.g. saved from browser dev tools) as a sanitized corpus."""
    try:
        count = har.import_har(har_file, output)
    except har.HarError as exc:
        raise UserError(str(exc)) from None
    click.echo(f"replaydiff: imported {count} exchanges from {har_file} into {output}", err=True)


@click.command("export")
@click.argument("corpus_file", metavar="CORPUS", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="The HAR file to write.")
def export_har(corpus_file: Path, output: Path) -> None:
    """Export a corpus as a HAR 1.2 file, for browser dev tools and other HAR viewers."""
    try:
        count = har.export_har(corpus_file, output)
    except har.HarError as exc:
        raise UserError(str(exc)) from None
    click.echo(f"replaydiff: exported {count} exchanges from {corpus_file} to {output}", err=True)
