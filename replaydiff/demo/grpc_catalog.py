"""The demo's gRPC service: a product catalog (grpcio, cleartext HTTP/2), in a baseline and a candidate build.

Messages come from `catalog.proto` compiled at start by grpcio-tools into a descriptor pool, so no generated code is
kept in the tree. The server answers reflection requests, as most internal gRPC services do, so a replay can fetch
the schema from the baseline. The candidate carries the planted gRPC divergences (`PLANTED_GRPC`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent import futures
from functools import cache
from pathlib import Path

import grpc
from grpc_reflection.v1alpha import reflection

from replaydiff.corpora.protobuf import compile_protos, load_pool, message_class

PROTO = Path(__file__).with_name("catalog.proto")
SERVICE = "shop.Catalog"

PLANTED_GRPC = frozenset(
    {
        "grpc shop.Catalog/GetItem|body|$.price_cents",  # int64 sent as a string: the field retyped
        "grpc shop.Catalog/GetItem|status|grpc-status",  # NOT_FOUND became INTERNAL for skus not in the catalog
        "grpc shop.Catalog/ListItems|latency|p50",  # +40 ms on every stream
    }
)
"""What a replay of the catalog's corpus must report, as divergence fingerprints (endpoint|kind|location)."""

_ITEMS = [
    {"sku": f"sku-{n}", "name": f"Item {n}", "price_cents": 199 + 100 * n, "tags": ["demo", f"cat-{n % 3}"],
     "stock": {"count": (7 * n) % 13, "warehouse": "north" if n % 2 else "south"},
     "owner_email": f"owner{n}@example.com"}
    for n in range(1, 21)
]


@cache
def descriptor_set() -> bytes:
    return compile_protos([PROTO])


def message_classes() -> dict[str, type]:
    pool = load_pool(descriptor_set(), str(PROTO))
    return {name: message_class(pool, f"shop.{name}") for name in ("ItemRequest", "Item", "ListRequest", "Stock")}


class Catalog:
    """The service's behaviour; `candidate=True` plants the divergences the demo's report must show."""

    def __init__(self, candidate: bool) -> None:
        self.candidate = candidate
        self.messages = message_classes()

    def get_item(self, request, context):  # type: ignore[no-untyped-def]
        item = next((entry for entry in _ITEMS if entry["sku"] == request.sku), None)
        if item is None:
            code = grpc.StatusCode.INTERNAL if self.candidate else grpc.StatusCode.NOT_FOUND
            context.abort(code, f"no item {request.sku}")
        message = self.messages["Item"](**{k: v for k, v in item.items() if k != "stock"})
        message.stock.CopyFrom(self.messages["Stock"](**item["stock"]))
        payload = message.SerializeToString()
        if self.candidate:
            payload = _price_as_string(message)
        return payload

    def list_items(self, request, context) -> Iterator[bytes]:  # type: ignore[no-untyped-def]
        if self.candidate:
            time.sleep(0.040)
        chosen = [entry for entry in _ITEMS if not request.category or request.category in entry["tags"]]
        for entry in chosen[: request.limit or len(chosen)]:
            message = self.messages["Item"](**{k: v for k, v in entry.items() if k != "stock"})
            message.stock.CopyFrom(self.messages["Stock"](**entry["stock"]))
            yield message.SerializeToString()


def _price_as_string(item) -> bytes:  # type: ignore[no-untyped-def]
    """The candidate's Item with field 3 sent as a string, as a build from a changed .proto would send it."""
    price = str(item.price_cents).encode()
    item.ClearField("price_cents")
    field_3 = bytes([3 << 3 | 2, len(price)]) + price
    return item.SerializeToString() + field_3


def serve(port: int = 0, candidate: bool = False, host: str = "127.0.0.1") -> tuple[grpc.Server, int]:
    """Start the catalog on `host:port` (0 = any free port); returns the server and its port."""
    catalog = Catalog(candidate)
    messages = catalog.messages
    handlers = {
        "GetItem": grpc.unary_unary_rpc_method_handler(
            catalog.get_item, request_deserializer=messages["ItemRequest"].FromString, response_serializer=bytes
        ),
        "ListItems": grpc.unary_stream_rpc_method_handler(
            catalog.list_items, request_deserializer=messages["ListRequest"].FromString, response_serializer=bytes
        ),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    reflection.enable_server_reflection((SERVICE, reflection.SERVICE_NAME), server, pool=load_pool(descriptor_set()))
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    return server, bound


def main() -> None:
    """`python -m replaydiff.demo.grpc_catalog`: the baseline and the candidate catalog on free ports, until
    interrupted or until stdin closes; prints one JSON line with their URLs once both listen."""
    import json
    import signal
    import sys

    baseline, baseline_port = serve(0, candidate=False)
    candidate, candidate_port = serve(0, candidate=True)
    urls = {"baseline": f"http://127.0.0.1:{baseline_port}", "candidate": f"http://127.0.0.1:{candidate_port}"}
    print(json.dumps(urls), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        sys.stdin.read()  # the parent holds the other end: its exit ends the catalog too
    except KeyboardInterrupt:
        pass
    finally:
        baseline.stop(0)
        candidate.stop(0)


if __name__ == "__main__":
    main()
