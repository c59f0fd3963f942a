"""The reference of `replay_fidelity.py`: how late a bare uvloop loop wakes on the replay's own schedule.

`sessions` tasks each wait for every `sessions`-th due time of a steady schedule (`interval_us` apart) on
uvloop's own timers (`TIMER_SLACK_S` added, waited again while early: never early), and note how late each
woke. With `--timerfd`, they wait as the replay's session loop does, on `replayer.deadline_timer`. With `--url`, each wake also sends one GET on raw keep-alive sockets to every target (3 by
default) and reads the fixed answer, so the server's work shares the cores as it does under the replay;
nothing else (no plan, no records, no HTTP parsing) runs.

Prints the lags, in microseconds, as one JSON list. Run: python bench/bare_timer.py --count N [--url URL] [--timerfd]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import time
from urllib.parse import urlsplit

import uvloop

from replaydiff.replayer.deadline_timer import DeadlineTimer
from replaydiff.replayer.session_loop import TIMER_SLACK_S, Wait

_REQUEST = b"GET /api/products/1 HTTP/1.1\r\nHost: shop.internal\r\nAccept: application/json\r\n\r\n"


async def _session(
    first: int, count: int, step: int, interval_s: float, epoch: float, lags: list[int],
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]], answer_length: int,
    timer: DeadlineTimer | None,
) -> None:
    for index in range(first, count, step):
        due = epoch + index * interval_s
        while (delay := due - time.perf_counter()) > 0:
            if timer is None:
                await asyncio.sleep(delay + TIMER_SLACK_S)
            else:
                await timer.wait(Wait(delay, math.ceil(due * 1e9)))
        lags.append(int((time.perf_counter() - due) * 1e6))
        for _, writer in connections:
            writer.write(_REQUEST)
        for reader, _ in connections:
            await reader.readexactly(answer_length)


async def measure(
    count: int, sessions: int, interval_us: int, url: str | None, targets: int, timerfd: bool
) -> list[int]:
    lags: list[int] = []
    per_session: list[list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = [[] for _ in range(sessions)]
    answer_length = 0
    if url:
        address = urlsplit(url)
        for connections in per_session:
            for _ in range(targets):
                connections.append(await asyncio.open_connection(address.hostname, address.port))
        reader, writer = per_session[0][0]
        writer.write(_REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        answer_length = len(head) + length
        await reader.readexactly(length)
    gc.freeze()  # as the replay does (`replaying._few_collections`)
    timer = DeadlineTimer(asyncio.get_running_loop()) if timerfd else None
    epoch = time.perf_counter() + 0.2
    await asyncio.gather(*(
        _session(s, count, sessions, interval_us / 1e6, epoch, lags, per_session[s], answer_length, timer)
        for s in range(sessions)
    ))
    if timer is not None:
        timer.close()
    for connections in per_session:
        for _, writer in connections:
            writer.close()
    return lags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--interval-us", type=int, default=1000)
    parser.add_argument("--url", help="send every wake's GET to this server, on --targets connections")
    parser.add_argument("--targets", type=int, default=3)
    parser.add_argument("--timerfd", action="store_true", help="wait as the replay does (replayer.deadline_timer)")
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        lags = runner.run(measure(args.count, args.sessions, args.interval_us, args.url, args.targets, args.timerfd))
    print(json.dumps(lags))


if __name__ == "__main__":
    main()
