"""Protobuf schemas: descriptor sets built from `.proto` files or read from `protoc -o` output, and the message
classes they describe. Everything that decodes or builds gRPC messages by schema starts here."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from google.protobuf import descriptor, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from .grpc import method_name


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
        code, said = _with_stderr_captured(lambda: protoc.main(arguments))
        if code != 0 or not output.exists():
            names = ", ".join(path.name for path in paths)
            first = said.strip().splitlines()[0] if said.strip() else "no reason given"
            raise SchemaError(f"protoc could not compile {names}: {first}")
        return output.read_bytes()


def _with_stderr_captured(run: Callable[[], int]) -> tuple[int, str]:
    """protoc (C++) writes its errors to file descriptor 2; they become the one-line error instead."""
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            code = run()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        return code, captured.read().decode("utf-8", errors="replace")


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


@dataclass(frozen=True, slots=True)
class GrpcMethod:
    """One method of a service the schema describes: what it takes and what it answers."""

    name: str
    """`package.Service/Method`."""
    input: descriptor.Descriptor
    output: descriptor.Descriptor
    client_streaming: bool
    server_streaming: bool

    @property
    def unary(self) -> bool:
        return not self.client_streaming and not self.server_streaming

    @property
    def message_classes(self) -> tuple[type[Message], type[Message]]:
        """(request class, answer class), for code that parses or builds the messages themselves."""
        return message_factory.GetMessageClass(self.input), message_factory.GetMessageClass(self.output)


class ProtoSchema:
    """The messages and services of a descriptor set, looked up by a gRPC call's path."""

    def __init__(self, descriptor_set: bytes, source: str) -> None:
        self.source = source
        """Where the schema came from, for reports: a file name, or `reflection from URL`."""
        self.pool = load_pool(descriptor_set, source)
        files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
        self.services = sorted(f"{file.package}.{service.name}".lstrip(".") for file in files.file for service in file.service)
        self._methods: dict[str, GrpcMethod | None] = {}

    def method(self, path: str) -> GrpcMethod | None:
        """The method a path (`/shop.Catalog/GetItem`) or a method name (`shop.Catalog/GetItem`) calls; None if the
        schema has no such service or method. Asked once per compared pair, so remembered per path."""
        if path not in self._methods:
            self._methods[path] = self._find(path)
        return self._methods[path]

    def _find(self, path: str) -> GrpcMethod | None:
        name = method_name(path) or method_name("/" + path)
        if name is None:
            return None
        service_name, _, method = name.partition("/")
        try:
            found = self.pool.FindServiceByName(service_name).methods_by_name.get(method)
        except KeyError:
            return None
        if found is None:
            return None
        return GrpcMethod(name, found.input_type, found.output_type, found.client_streaming, found.server_streaming)

    def methods(self) -> list[GrpcMethod]:
        """Every method of every service, in name order."""
        found = [self.method(f"{service}/{method.name}")
                 for service in self.services for method in self.pool.FindServiceByName(service).methods]
        return [method for method in found if method is not None]


def read_schema(descriptor_set: Path | None = None, protos: list[Path] | None = None) -> ProtoSchema | None:
    """The schema a user gave: a `protoc -o` descriptor set and/or `.proto` files (compiled together); a one-line
    `SchemaError` naming the file when one is missing or not a schema."""
    parts = descriptor_pb2.FileDescriptorSet()
    names: list[str] = []
    if descriptor_set is not None:
        try:
            data = descriptor_set.read_bytes()
        except OSError as error:
            raise SchemaError(f"{descriptor_set}: cannot read the descriptor set: {error.strerror}") from None
        load_pool(data, str(descriptor_set))  # says what is wrong with this file before it is merged
        parts.MergeFromString(data)
        names.append(str(descriptor_set))
    if protos:
        for proto in protos:
            if not proto.is_file():
                raise SchemaError(f"{proto}: no such .proto file")
        parts.MergeFromString(compile_protos(protos))
        names += [str(proto) for proto in protos]
    if not names:
        return None
    unique = {file.name: file for file in parts.file}  # a file both sources hold is loaded once
    merged = descriptor_pb2.FileDescriptorSet(file=list(unique.values()))
    return ProtoSchema(merged.SerializeToString(), ", ".join(names))


class ReflectionUnavailable(Exception):
    """The server does not answer gRPC server reflection (or could not be reached): decode by wire format."""


REFLECTION_SERVICES = ("grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection")
"""Server reflection as servers offer it, asked in this order: v1 (grpc-java's `ProtoReflectionServiceV1`, one
of the two grpc-go registers) then v1alpha (grpcio's, and older servers'). The two speak the same messages."""


def reflect_schema(url: str, *, ca_file: str | Path | None = None, insecure: bool = False,
                   timeout_s: float = 5.0) -> ProtoSchema:
    """The schema a running server describes by gRPC server reflection (grpcio-reflection's descriptor database,
    over v1 or else v1alpha), every service it lists and all their files; `ReflectionUnavailable` with a one-line
    reason otherwise.

    `url` is the target's base URL: `http://` in cleartext (h2c), `https://` over TLS, trusting `ca_file` (else
    the system's CAs), as the replay does. grpcio always verifies a certificate, so `insecure` without `ca_file`
    cannot be honoured: that is said at once rather than after a failed handshake.
    """
    import grpc  # imported here: only a replay of gRPC traffic without a given schema talks to reflection

    parts = urlsplit(url if "://" in url else f"http://{url}")
    tls = parts.scheme == "https"
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname  # an IPv6 address in brackets
    address = f"{host}:{parts.port or (443 if tls else 80)}"
    if tls and insecure and ca_file is None:
        raise ReflectionUnavailable(f"{address} is https and --insecure skips verification, which grpcio's "
                                    "reflection client cannot; give --ca-cert to ask it")  # fmt: skip
    if tls:
        try:
            roots = Path(ca_file).read_bytes() if ca_file is not None else None
        except OSError as error:
            raise ReflectionUnavailable(f"cannot read the CA bundle {ca_file}: {error.strerror}") from None
        opened = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=roots))
    else:
        opened = grpc.insecure_channel(address)
    with opened as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout_s)
            for service_name in REFLECTION_SERVICES:
                database = _reflection_database(channel, service_name)
                try:
                    listed = database.get_services()
                    break
                except grpc.RpcError as error:  # the next version, if this one is not served
                    unserved = error.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
                    if service_name == REFLECTION_SERVICES[-1] or not unserved:
                        raise
            services = [name for name in listed if not name.startswith("grpc.reflection.")]
            pool = descriptor_pool.DescriptorPool(database)
            files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
            for service in services:
                _collect(pool.FindServiceByName(service).file, files)
        except grpc.FutureTimeoutError:
            trust = " (is its certificate trusted? --ca-cert)" if tls else ""
            raise ReflectionUnavailable(
                f"{address} did not accept a gRPC connection{' over TLS' if tls else ''} within {timeout_s:g} s{trust}"
            ) from None
        except grpc.RpcError as error:
            code = error.code().name if hasattr(error, "code") else "error"  # type: ignore[attr-defined]
            raise ReflectionUnavailable(f"{address} does not answer gRPC server reflection ({code})") from None
        except (KeyError, TypeError, ValueError) as error:
            raise ReflectionUnavailable(f"{address} answered reflection with an unusable schema ({error})") from None
    if not files:
        raise ReflectionUnavailable(f"{address} lists no service by reflection")
    return ProtoSchema(descriptor_pb2.FileDescriptorSet(file=list(files.values())).SerializeToString(),
                       f"server reflection of {address}")


def _reflection_database(channel: Any, service_name: str) -> Any:
    """grpcio-reflection's descriptor database, asking `service_name`."""
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    return ProtoReflectionDescriptorDatabase(_ReflectionChannel(channel, service_name))


class _ReflectionChannel:
    """A channel whose calls to v1alpha's reflection go to `service_name` instead: grpcio-reflection's database
    knows only v1alpha's path, and v1 speaks the same messages."""

    _V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/"

    def __init__(self, channel: Any, service_name: str) -> None:
        self._channel = channel
        self._prefix = f"/{service_name}/"

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._channel.stream_stream(method.replace(self._V1ALPHA, self._prefix), *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._channel, name)


def _collect(file: descriptor.FileDescriptor, files: dict[str, descriptor_pb2.FileDescriptorProto]) -> None:
    """`file` and everything it imports, dependencies first, so the set loads into a fresh pool."""
    if file.name in files:
        return
    for dependency in file.dependencies:
        _collect(dependency, files)
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    files[file.name] = proto
