"""Generates the demo's gRPC corpus by calling the real catalog service through the real recorder.

    python -m replaydiff.demo.catalog_traffic -o replaydiff/demo/demo-catalog.jsonl.zst [--clients N] [--seed S]

It starts the baseline catalog (grpcio, cleartext HTTP/2), puts `replaydiff record` in front of it as a reverse
proxy, and lets a few dozen clients (each its own channel, so its own connection, with its own bearer token in the
call metadata) make unary lookups, lookups of unknown skus and server-streaming listings over a few seconds. The
calls are planned up front from `random.Random(seed)` and only then played, so a seed always yields the same calls.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from random import Random

import click
import grpc
from rich.console import Console

from replaydiff.corpora import CorpusReader
from replaydiff.corpora.grpc import grpc_status
from replaydiff.demo.grpc_catalog import message_classes, serve
from replaydiff.demo.traffic import recording

DEFAULT_CLIENTS = 24
DEFAULT_SEED = 11
WINDOW_S = 6.0


@dataclass(frozen=True, slots=True)
class Call:
    at_s: float
    method: str
    """`GetItem` or `ListItems`."""
    argument: str
    """The sku asked for, or the category listed."""
    limit: int = 0


@dataclass(frozen=True, slots=True)
class Client:
    token: str
    calls: list[Call]


def plan_clients(count: int, *, seed: int, window_s: float = WINDOW_S) -> list[Client]:
    rng = Random(seed)
    clients = []
    for number in range(count):
        at = rng.uniform(0, window_s * 0.6)
        calls = []
        for _ in range(rng.randint(4, 12)):
            roll = rng.random()
            if roll < 0.65:
                calls.append(Call(at, "GetItem", f"sku-{rng.randint(1, 20)}"))
            elif roll < 0.8:
                calls.append(Call(at, "GetItem", f"sku-{rng.randint(100, 120)}"))  # not in the catalog
            else:
                calls.append(Call(at, "ListItems", f"cat-{rng.randint(0, 2)}", limit=rng.choice((0, 3, 5))))
            at += rng.uniform(0.02, 0.3)
        clients.append(Client(token=f"demo-token-{number:03d}-{rng.getrandbits(48):012x}", calls=calls))
    return clients


async def play_client(client: Client, address: str, started: float) -> int:
    messages = message_classes()
    answered = 0
    async with grpc.aio.insecure_channel(address.removeprefix("http://")) as channel:
        get_item = channel.unary_unary("/shop.Catalog/GetItem",
                                       request_serializer=messages["ItemRequest"].SerializeToString,
                                       response_deserializer=messages["Item"].FromString)
        list_items = channel.unary_stream("/shop.Catalog/ListItems",
                                          request_serializer=messages["ListRequest"].SerializeToString,
                                          response_deserializer=messages["Item"].FromString)
        metadata = (("authorization", f"Bearer {client.token}"),)
        for call in client.calls:
            delay = started + call.at_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                if call.method == "GetItem":
                    await get_item(messages["ItemRequest"](sku=call.argument), metadata=metadata)
                else:
                    request = messages["ListRequest"](category=call.argument, limit=call.limit)
                    [item async for item in list_items(request, metadata=metadata)]
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            answered += 1
    return answered


async def generate(clients: list[Client], output: Path) -> int:
    server, port = serve(0)
    try:
        async with recording(f"http://127.0.0.1:{port}", output) as address:
            started = time.monotonic()
            answered = await asyncio.gather(*(play_client(client, address, started) for client in clients))
    finally:
        server.stop(0)
    return sum(answered)


@click.command()
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
@click.option("--clients", type=click.IntRange(min=1), default=DEFAULT_CLIENTS, show_default=True)
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True)
def main(output: Path, clients: int, seed: int) -> None:
    """Record the demo's gRPC corpus through `replaydiff record`."""
    console = Console(stderr=True)
    planned = plan_clients(clients, seed=seed)
    answered = asyncio.run(generate(planned, output))
    exchanges = list(CorpusReader(output))
    statuses: dict[int | None, int] = {}
    for exchange in exchanges:
        status = grpc_status(exchange.response) if exchange.response else None
        statuses[status] = statuses.get(status, 0) + 1
    console.print(f"{answered} calls answered, {len(exchanges)} recorded in {output}; grpc-status counts {statuses}")
    if len(exchanges) != answered:
        raise click.ClickException(f"{answered} calls were answered but {len(exchanges)} were recorded")


if __name__ == "__main__":
    main()
