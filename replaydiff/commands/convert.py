"""`replaydiff import` and `replaydiff export`: capture files into corpora, corpora out as HAR."""

from __future__ import annotations

from pathlib import Path

import click

from replaydiff.recorder import har
from replaydiff.recorder.importing import UnreadableInput, import_capture
from replaydiff.recorder.policy import PolicyError
from replaydiff.recorder.pseudonym import PseudonymKeyError
from replaydiff.recorder.retries import RetryTagger
from replaydiff.recorder.sanitize import Sanitizer
from replaydiff.commands.record import SANITIZING_USE, Sanitizing, Sessions, sanitize_options, session_options
from replaydiff.commands.schema import SchemaFiles, schema_options
from replaydiff.errors import UserError


@click.command("import")
@click.argument("capture", metavar="FILE", type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", required=True, type=click.Path(path_type=Path), help="The corpus to write (NAME.jsonl.zst)."
)
@click.option("--strict", is_flag=True, help="HAR: stop at the first bad entry instead of skipping and counting it.")
@sanitize_options
@schema_options(SANITIZING_USE)
@session_options
def import_file(
    capture: Path,
    output: Path,
    strict: bool,
    sanitizing: Sanitizing,
    schema_files: SchemaFiles,
    sessions: Sessions,
) -> None:
    """Import a capture as a sanitized corpus: HAR 1.2, pcap, pcapng or a mitmproxy flow file.

    The kind is recognised from the file's content. In packet captures, HTTP/1.x is found on any port; TCP
    streams that are not HTTP, or that break off, are counted and reported, never fatal.
    """
    try:
        sanitizer = Sanitizer.configured(
            policy_file=sanitizing.policy,
            defaults=sanitizing.defaults,
            key_file=sanitizing.pseudonym_key_file,
            grpc_schema=schema_files.load(),
        )
        retries = RetryTagger(window_s=sanitizing.retry_window_s)
        count, result = import_capture(
            capture, output, sanitizer=sanitizer, retries=retries, session_by=sessions.by, session_gap_s=sessions.gap_s,
            strict=strict,
        )
    except (UnreadableInput, PolicyError, PseudonymKeyError) as exc:
        raise UserError(str(exc)) from None
    click.echo(f"replaydiff: imported {count} exchanges from {capture} into {output}", err=True)
    for note, value in result.notes.items():
        click.echo(f"replaydiff: {note.replace('_', ' ')}: {value}", err=True)


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
