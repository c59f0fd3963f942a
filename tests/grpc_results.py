"""Results files of real gRPC answers: the demo catalog served by grpcio as baseline, baseline2 and candidate,
called with grpcio (bytes in, bytes out), each answer stored as the corpus stores HTTP/2 (framed body, trailers).

Until the replayer speaks HTTP/2 this is how diff tests get replay records holding what real servers sent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from replaydiff.corpora import Attempt, ReplayRecord, Response, ResultsWriter
from replaydiff.corpora.endpoints import endpoint_of
from replaydiff.corpora.grpc import GrpcMessage, join_messages
from replaydiff.demo import grpc_catalog

ROLES = ("baseline", "baseline2", "candidate")


@dataclass(frozen=True)
class Call:
    path: str
    request: bytes
    streaming: bool


def catalog_calls(items: int = 12, unknown: int = 4, listings: int = 24) -> list[Call]:
    """GetItem of known and unknown skus, and ListItems by category: the calls the planted divergences show on."""
    classes = grpc_catalog.message_classes()
    get = [Call("/shop.Catalog/GetItem", classes["ItemRequest"](sku=f"sku-{1 + n % 20}").SerializeToString(), False)
           for n in range(items)]  # fmt: skip
    get += [Call("/shop.Catalog/GetItem", classes["ItemRequest"](sku=f"nope-{n}").SerializeToString(), False)
            for n in range(unknown)]  # fmt: skip
    listed = [Call("/shop.Catalog/ListItems",
                   classes["ListRequest"](category=f"cat-{n % 3}", limit=2 + n % 3).SerializeToString(), True)
              for n in range(listings)]  # fmt: skip
    return get + listed


@contextmanager
def catalogs(candidate_planted: bool = True) -> Iterator[dict[str, int]]:
    """Three running catalogs (the candidate with `PLANTED_GRPC` unless `candidate_planted` is off): role → port."""
    servers = {role: grpc_catalog.serve(candidate=candidate_planted and role == "candidate") for role in ROLES}
    try:
        yield {role: port for role, (_, port) in servers.items()}
    finally:
        for server, _ in servers.values():
            server.stop(0)


def answer(channel: grpc.Channel, call: Call) -> tuple[Response, int]:
    """What the server sent, as the corpus keeps it, and how long it took (µs)."""
    started = time.perf_counter()
    if call.streaming:
        stream = channel.unary_stream(call.path, request_serializer=None, response_deserializer=None)(
            call.request, timeout=10
        )
        messages: list[bytes] = []
        try:
            messages = list(stream)
        except grpc.RpcError:
            pass
        rpc = stream
    else:
        future = channel.unary_unary(call.path, request_serializer=None, response_deserializer=None).future(
            call.request, timeout=10
        )
        try:
            messages = [future.result()]
        except grpc.RpcError:
            messages = []
        rpc = future
    duration_us = int((time.perf_counter() - started) * 1e6)
    code = rpc.code()
    trailers = [("grpc-status", str(code.value[0]))]
    if rpc.details():
        trailers.append(("grpc-message", rpc.details()))
    trailers += [(key, str(value)) for key, value in (rpc.trailing_metadata() or ())]
    headers = [("content-type", "application/grpc")] + [(k, str(v)) for k, v in (rpc.initial_metadata() or ())]
    body = join_messages([GrpcMessage(payload) for payload in messages])
    return Response(200, "", "HTTP/2.0", headers, body, trailers=trailers), duration_us


def write_catalog_results(
    path: Path, ports: dict[str, int], calls: list[Call], targets: dict[str, str] | None = None
) -> Path:
    """Each call sent to every role in turn, one record per role, as the replayer writes them; `targets`: the URLs
    the results header names, if not the servers called."""
    targets = targets or {role: f"http://127.0.0.1:{port}" for role, port in ports.items()}
    channels = {role: grpc.insecure_channel(f"127.0.0.1:{port}") for role, port in ports.items()}
    try:
        with ResultsWriter(path, corpus="catalog", mode="rate", targets=targets) as writer:
            for number, call in enumerate(calls):
                for role in ROLES:
                    response, duration_us = answer(channels[role], call)
                    attempt = Attempt(sent_us=number * 1000, ttfb_us=duration_us, duration_us=duration_us, status=200)
                    endpoint = endpoint_of("POST", call.path)
                    writer.write(ReplayRecord(f"ex{number}", role, endpoint, [attempt], response, recorded_status=200))
    finally:
        for channel in channels.values():
            channel.close()
    return path
