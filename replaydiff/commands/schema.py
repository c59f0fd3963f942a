"""The gRPC schema options: one definition for every command that reads gRPC messages (record, import, diff, run,
fuzz), each saying in its help what the schema is used for there."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from replaydiff.corpora.protobuf import ProtoSchema, SchemaError, read_schema
from replaydiff.errors import UserError

_FILE = click.Path(dir_okay=False, path_type=Path)


@dataclass(frozen=True, slots=True)
class SchemaFiles:
    """Where gRPC message types come from: a `protoc -o` descriptor set and/or `.proto` files (merged)."""

    descriptor_set: Path | None = None
    protos: tuple[Path, ...] = ()

    def load(self) -> ProtoSchema | None:
        """The schema, None when no file was given; a bad file is a one-line usage error naming it."""
        try:
            return read_schema(self.descriptor_set, list(self.protos))
        except SchemaError as exc:
            raise UserError(str(exc)) from None


def schema_file_options(use: str) -> list[Callable[[Any], Any]]:
    """`--proto-descriptor-set FILE` and `--proto FILE.proto` (repeatable), as parameters `proto_descriptor_set` and
    `protos`; `use` ends each help text: what the command does with the schema."""
    return [
        click.option("--proto-descriptor-set", type=_FILE, metavar="FILE",
                     help=f"gRPC schema as a descriptor set (protoc -o FILE --include_imports): {use}"),
        click.option("--proto", "protos", type=_FILE, multiple=True, metavar="FILE.proto",
                     help="gRPC schema as .proto files, compiled with grpcio-tools (repeatable; each file's folder is "
                          "its import path; with --proto-descriptor-set, both are merged)."),
    ]  # fmt: skip


def schema_options(use: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The schema options, passed to the command as one `schema_files: SchemaFiles`."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def with_schema(*args: Any, proto_descriptor_set: Path | None, protos: tuple[Path, ...], **kwargs: Any) -> Any:
            return command(*args, schema_files=SchemaFiles(proto_descriptor_set, protos), **kwargs)

        decorated: Callable[..., Any] = with_schema
        for option in reversed(schema_file_options(use)):
            decorated = option(decorated)
        return decorated

    return decorate
