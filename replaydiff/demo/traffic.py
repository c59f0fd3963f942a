"""Generates the bundled sample corpus by playing realistic shop traffic through the real recorder.

    python -m replaydiff.demo.traffic -o replaydiff/demo/demo-shop.jsonl.zst [--sessions N] [--seed S]

It starts the demo system, puts `replaydiff record` in front of the baseline
shop as a reverse proxy, and lets a few hundred users arrive (Poisson) over
about 40 s. Each user is one session on one keep-alive connection following a
journey (categories, listings, products, reviews, search, recommendations,
cart quote, sometimes checkout, sometimes an order created, read and amended
by the id the shop returned) with think times in between. Every user sends
a bearer token and a session cookie, so the corpus shows the sanitizer at work.

The journeys are planned up front from `random.Random(seed)` (pure, testable)
and only then played (I/O), so a seed always yields the same requests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import sys
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from random import Random
from typing import Any
from urllib.parse import urlencode

import click
import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from replaydiff.corpora import CorpusReader, endpoint_of
from replaydiff.demo.services import CATEGORIES, CATEGORY_NAMES, PRODUCT_IDS, category_of
from replaydiff.demo.system import DemoSystem

JSON = dict[str, Any]

DEFAULT_SESSIONS = 320
DEFAULT_SEED = 7
ARRIVAL_WINDOW_S = 40.0
MIN_EXCHANGES = 2000
ALL_PRODUCTS_SHARE = 0.7
"""Of users who first page through the whole catalogue: the listing is the busiest endpoint, as in most shops,
which gives a regression in its p99 enough requests to be found."""
ORDER_SHARE = 0.3
"""Of users who also place an order through the stateful orders API."""
ORDER_NOTES = ("leave at the door", "ring twice", None)
SPRING_XL_SESSIONS = 6
"""Few on purpose: the candidate's 500 for this coupon is a rare divergence a replay must still catch."""
HEALTH_PROBE_INTERVAL_S = 2.0
THINK_TIME_S = (0.05, 0.8)
RECORDER_START_TIMEOUT_S = 20.0
RECORDER_STOP_TIMEOUT_S = 30.0
LISTEN_URL = re.compile(r"http://127\.0\.0\.1:\d+")

COUPONS = (None, None, None, "SPRING10", "WELCOME5", "FREESHIP", "SUMMER-2023")
"""Mostly none; `SUMMER-2023` is an expired code the shop does not apply. Never `SPRING-XL`: see above."""
SEARCH_TERMS = (
    *(noun for nouns in CATEGORIES.values() for noun in nouns[:4]),
    *CATEGORY_NAMES,
    "rustic kettle", "nordic mug", "deluxe tent", "vintage", "sturdy", "gift", "unicorn",
)  # fmt: skip
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "ShopApp/3.12.0 (iPhone; iOS 17.4.1; Scale/3.00)",
    "ShopApp/3.11.2 (Android 14; Pixel 8)",
)
COUNTRIES = ("NL", "DE", "FR", "BE", "IE")


# --- planning (pure) -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    method: str
    target: str
    """Path plus query, as it goes on the request line."""
    body: JSON | None = None
    think_s: float = 0.0
    """Pause before sending: the user reading the previous page."""
    remember: str | None = None
    """Keep the answer's `id` under this name; later targets say `{name}` where it goes."""


@dataclass(frozen=True, slots=True)
class Session:
    start_s: float
    headers: dict[str, str]
    steps: list[Step] = field(default_factory=list)


def get(path: str, query: dict[str, Any] | None = None) -> Step:
    return Step("GET", f"{path}?{urlencode(query)}" if query else path)


def post(path: str, body: JSON, *, remember: str | None = None) -> Step:
    return Step("POST", path, body, remember=remember)


def put(path: str, body: JSON) -> Step:
    return Step("PUT", path, body)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def bearer_token(rng: Random, user: int) -> str:
    """JWT-shaped, as single-page apps send them, so the sanitizer's JWT pattern has something to find."""
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    claims = _b64url(json.dumps({"sub": f"user-{user}", "iat": 1_714_000_000 + user}).encode())
    return f"{header}.{claims}.{_b64url(rng.randbytes(32))}"


def user_headers(rng: Random, user: int) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {bearer_token(rng, user)}",
        "Cookie": f"sid={rng.randbytes(16).hex()}",
        "User-Agent": rng.choice(USER_AGENTS),
        "Accept": "application/json",
    }


def products_in(category: str) -> list[int]:
    return [product_id for product_id in PRODUCT_IDS if category_of(product_id) == category]


def user_journey(rng: Random, user: int, *, spring_xl: bool) -> list[Step]:
    """One visit: browse a category, look at products, maybe search, maybe buy.

    `spring_xl` users always quote their cart with that coupon once and then leave without checking out.
    """
    category = rng.choice(CATEGORY_NAMES)
    steps = [get("/api/categories")]
    if rng.random() < ALL_PRODUCTS_SHARE:
        steps += [get("/api/products", {"page": page}) for page in range(1, rng.randint(1, 3) + 1)]
    pages = rng.choice((1, 2, 2))
    steps += [get("/api/products", {"category": category, "page": page}) for page in range(1, pages + 1)]
    viewed = []
    for _ in range(rng.randint(1, 3)):
        stale_link = rng.random() < 0.03
        product_id = rng.randint(900, 999) if stale_link else rng.choice(products_in(category))
        steps.append(get(f"/api/products/{product_id}"))
        if stale_link:
            continue
        viewed.append(product_id)
        if rng.random() < 0.6:
            steps.append(get(f"/api/products/{product_id}/reviews"))
        if rng.random() < 0.5:
            steps.append(get("/api/recommendations", {"for": product_id}))
    if rng.random() < 0.6:
        steps += [get("/api/search", {"q": rng.choice(SEARCH_TERMS)}) for _ in range(rng.randint(1, 2))]
    if spring_xl or rng.random() < 0.55:
        steps += shopping(rng, user, viewed or products_in(category)[:1], spring_xl=spring_xl)
    if not spring_xl and rng.random() < ORDER_SHARE:
        steps += ordering(rng, viewed or products_in(category)[:1])
    return [replace(step, think_s=rng.uniform(*THINK_TIME_S) if i else 0.0) for i, step in enumerate(steps)]


def shopping(rng: Random, user: int, viewed: list[int], *, spring_xl: bool) -> list[Step]:
    """A quote for the viewed products; about half then check out, sending an email and a payment token."""
    cart = {
        "items": [{"product_id": pid, "quantity": rng.randint(1, 3)} for pid in dict.fromkeys(viewed)],
        "coupon": "SPRING-XL" if spring_xl else rng.choice(COUPONS),
    }
    steps = [post("/api/cart/quote", cart)]
    if not spring_xl and rng.random() < 0.45:
        order = {
            **cart,
            "email": f"user{user}@example.com",
            "shipping": {"country": rng.choice(COUNTRIES), "postcode": f"{rng.randint(1000, 9999)}"},
            "payment": {"method": "card", "token": f"tok_{rng.randbytes(12).hex()}"},
        }
        steps.append(post("/api/checkout", order))
    return steps


def ordering(rng: Random, viewed: list[int]) -> list[Step]:
    """Create an order, read it back by the id the shop returned, sometimes amend it and read it again."""
    items = [{"product_id": pid, "quantity": rng.randint(1, 3)} for pid in dict.fromkeys(viewed)]
    steps = [post("/api/orders", {"items": items, "note": rng.choice(ORDER_NOTES)}, remember="order"),
             get("/api/orders/{order}")]  # fmt: skip
    if rng.random() < 0.5:
        change = {"note": rng.choice(ORDER_NOTES)} if rng.random() < 0.5 else {"items": items[:1]}
        steps += [put("/api/orders/{order}", change), get("/api/orders/{order}")]
    return steps


def health_probe(window_s: float) -> Session:
    """A load balancer's probe: one more session, unauthenticated, steady through the whole window."""
    count = int(window_s / HEALTH_PROBE_INTERVAL_S) + 1
    probe = Step("GET", "/api/health", think_s=HEALTH_PROBE_INTERVAL_S)
    return Session(0.0, {"User-Agent": "kube-probe/1.29"}, [get("/api/health")] + [probe] * (count - 1))


def plan_sessions(count: int, *, seed: int, window_s: float = ARRIVAL_WINDOW_S) -> list[Session]:
    """`count` users arriving as a Poisson process over about `window_s` seconds, plus the health probe."""
    rng = Random(seed)
    spring_xl = set(rng.sample(range(count), k=min(SPRING_XL_SESSIONS, count)))
    sessions = [health_probe(window_s)]
    start = 0.0
    for user in range(count):
        start += rng.expovariate(count / window_s)
        headers = user_headers(rng, user)
        sessions.append(Session(start, headers, user_journey(rng, user, spring_xl=user in spring_xl)))
    return sessions


# --- playing (I/O) ---------------------------------------------------------------------------


async def play_session(session: Session, base_url: str, started: float, on_answer: Callable[[int], None]) -> None:
    """One user on one keep-alive connection, sending their steps in order at their planned times."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, started + session.start_s - loop.time()))
    async with httpx.AsyncClient(
        base_url=base_url,
        headers=session.headers,
        limits=httpx.Limits(max_connections=1),
        timeout=10.0,
        trust_env=False,
    ) as client:
        ids: dict[str, str] = {}
        for step in session.steps:
            await asyncio.sleep(step.think_s)
            response = await client.request(step.method, step.target.format_map(ids), json=step.body)
            if step.remember:
                ids[step.remember] = response.json()["id"]
            on_answer(response.status_code)


async def play(sessions: list[Session], base_url: str, on_answer: Callable[[int], None]) -> None:
    """All sessions concurrently; the first transport error stops everything, since the corpus would be incomplete."""
    started = asyncio.get_running_loop().time()
    async with asyncio.TaskGroup() as group:
        for session in sessions:
            group.create_task(play_session(session, base_url, started, on_answer))


class RecorderError(click.ClickException):
    """The recorder did not start, or did not stop cleanly; the message carries its last output."""

    def __init__(self, message: str, output: deque[str]) -> None:
        tail = "\n".join(output) or "(no output)"
        super().__init__(f"replaydiff record: {message}; its last output:\n{tail}")


@asynccontextmanager
async def recording(upstream: str, output: Path) -> AsyncIterator[str]:
    """Runs `replaydiff record` in front of `upstream` and yields the address it listens on.

    On exit it sends SIGTERM and requires exit code 0: a recorder that fails to
    close its file cleanly has produced a corpus we must not ship.
    """
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "replaydiff.cli", "record"),
        *("--upstream", upstream, "--listen", "0", "-o", str(output)),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    tail: deque[str] = deque(maxlen=20)
    listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    # Kept draining for the recorder's whole life: a full stderr pipe would block it mid-recording.
    reader = asyncio.create_task(_read_stderr(process, tail, listening))
    try:
        try:
            address = await asyncio.wait_for(listening, RECORDER_START_TIMEOUT_S)
        except TimeoutError:
            raise RecorderError(f"no listen address within {RECORDER_START_TIMEOUT_S:g} s", tail) from None
        yield address
    finally:
        await _stop(process, tail)
        await reader


async def _read_stderr(process: asyncio.subprocess.Process, tail: deque[str], listening: asyncio.Future[str]) -> None:
    assert process.stderr is not None
    async for raw in process.stderr:
        line = raw.decode(errors="replace").rstrip()
        tail.append(line)
        if not listening.done() and (match := LISTEN_URL.search(line)):
            listening.set_result(match.group())
    if not listening.done():
        listening.set_exception(RecorderError(f"exit code {await process.wait()} before listening", tail))


async def _stop(process: asyncio.subprocess.Process, tail: deque[str]) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.wait_for(process.wait(), RECORDER_STOP_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise RecorderError(f"no exit within {RECORDER_STOP_TIMEOUT_S:g} s of SIGTERM", tail) from None
    if code != 0:
        raise RecorderError(f"exit code {code}", tail)


# --- checking what was recorded ------------------------------------------------------------


@dataclass(slots=True)
class CorpusSummary:
    exchanges: int = 0
    sessions: set[str] = field(default_factory=set)
    endpoints: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    span_s: float = 0.0
    leaked_secrets: int = 0
    """Recorded header values equal to a token or cookie we sent: the sanitizer let them through."""


def summarize(path: Path, secrets: set[str]) -> CorpusSummary:
    summary = CorpusSummary()
    first_us, last_us = None, 0
    for exchange in CorpusReader(path):
        request = exchange.request
        summary.exchanges += 1
        summary.sessions.add(exchange.session)
        summary.endpoints[endpoint_of(request.method, request.path)] += 1
        summary.statuses[exchange.response.status if exchange.response else 0] += 1
        summary.leaked_secrets += sum(value in secrets for _, value in request.headers)
        first_us = exchange.start_us if first_us is None else min(first_us, exchange.start_us)
        last_us = max(last_us, exchange.start_us + exchange.duration_us)
    summary.span_s = (last_us - (first_us or 0)) / 1e6
    return summary


def secrets_sent(sessions: list[Session]) -> set[str]:
    return {s.headers[name] for s in sessions for name in ("Authorization", "Cookie") if name in s.headers}


def show(summary: CorpusSummary, path: Path, console: Console) -> None:
    table = Table(title=f"{path}  ({path.stat().st_size / 1024:.0f} KiB)")
    table.add_column("endpoint")
    table.add_column("exchanges", justify="right")
    for endpoint, count in sorted(summary.endpoints.items()):
        table.add_row(endpoint, str(count))
    console.print(table)
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(summary.statuses.items()))
    console.print(
        f"{summary.exchanges} exchanges in {len(summary.sessions)} sessions over {summary.span_s:.1f} s, "
        f"{len(summary.endpoints)} endpoints; statuses {statuses}"
    )


def problems(summary: CorpusSummary, *, sent: int, min_exchanges: int) -> list[str]:
    found = []
    if summary.exchanges < min_exchanges:
        found.append(f"only {summary.exchanges} exchanges recorded, at least {min_exchanges} needed")
    if summary.exchanges != sent:
        found.append(f"{sent} requests sent but {summary.exchanges} recorded")
    if summary.leaked_secrets:
        found.append(f"{summary.leaked_secrets} bearer tokens or cookies reached the corpus unmasked")
    if any(status >= 500 or status == 0 for status in summary.statuses):
        found.append("the baseline answered 5xx or not at all; the sample corpus must show a healthy baseline")
    return found


# --- command line --------------------------------------------------------------------------


async def generate(sessions: list[Session], output: Path, console: Console) -> int:
    total = sum(len(session.steps) for session in sessions)
    with DemoSystem() as demo, Progress(console=console, transient=False) as progress:
        task = progress.add_task(f"recording {len(sessions)} sessions", total=total)
        async with recording(demo.baseline, output) as proxy:
            await play(sessions, proxy, lambda _status: progress.advance(task))
    return total


@click.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Corpus to write.")
@click.option("--sessions", type=click.IntRange(min=1), default=DEFAULT_SESSIONS, show_default=True, help="Users.")
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Same seed, same requests.")
@click.option(
    "--min-exchanges",
    type=click.IntRange(min=0),
    default=MIN_EXCHANGES,
    show_default=True,
    help="Fail if fewer were recorded; lower it only for quick trial runs.",
)
def main(output: Path, sessions: int, seed: int, min_exchanges: int) -> None:
    """Record the demo shop's sample corpus through `replaydiff record`."""
    plan = plan_sessions(sessions, seed=seed)
    sent = asyncio.run(generate(plan, output, Console(stderr=True)))
    summary = summarize(output, secrets_sent(plan))
    show(summary, output, Console())
    if found := problems(summary, sent=sent, min_exchanges=min_exchanges):
        raise click.ClickException("; ".join(found))


if __name__ == "__main__":
    main()
