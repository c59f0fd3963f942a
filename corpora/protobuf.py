"""Protobuf schemas: descriptor sets built from `.proto` files or read from `protoc -o` output, and the message
classes they describe. Everything that decodes or builds gRPC messages by schema starts here."""

from __future__ import annotations

import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message



class SchemaError(ValueError):
    """A schema that cannot be used: the message names the file and what to do."""


def compile_protos(paths: list[Path]) -> bytes:
    """A serialized `FileDescriptorSet` of the `.proto` files and everything they import (grpcio-tools' protoc)."""
    from grpc_tools import protoc  # imported here: protoc is only needed when schemas come as .proto files

    include_dirs = sorted({str(path.resolve().parent) for path in paths})
    with tempfile.TemporaryDirectory(prefix="replaydiff-protoc-") as scratch:
        output = Path(scratch) / "set.desc"
        arguments = ["protoc", *(f"-I{folder}" for folder in include_dirs), f"--proto_path={_well_known_dir()}"]
        arguments += [f"--descriptor_set_out={output}", "--include_imports", *(str(path.resolve()) for path in paths)]
        if protoc.main(arguments) != 0 or not output.exists():
            names = ", ".join(path.name for path in paths)
            raise SchemaError(f"protoc could not compile {names}; run `python -m grpc_tools.protoc` on it to see why")
        return output.read_bytes()


def _well_known_dir() -> str:
    import grpc_tools

    return str(Path(grpc_tools.__file__).parent / "_proto")


def load_pool(descriptor_set: bytes, source: str = "descriptor set") -> descriptor_pool.DescriptorPool:
    """A pool holding every file of a serialized `FileDescriptorSet`; a one-line `SchemaError` if it is not one."""
    files = descriptor_pb2.FileDescriptorSet()
    try:
        files.ParseFromString(descriptor_set)
    except DecodeError as error:
        raise SchemaError(f"{source} is not a protobuf descriptor set (protoc -o FILE --include_imports): {error}")
    if not files.file:
        raise SchemaError(f"{source} holds no .proto file (make it with protoc -o FILE --include_imports)")
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        try:
            pool.Add(file)
        except (TypeError, ValueError) as error:
            raise SchemaError(f"{source}: {file.name} does not load ({error}); was it made with --include_imports?")
    return pool


def message_class(pool: descriptor_pool.DescriptorPool, full_name: str) -> type[Message]:
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))
