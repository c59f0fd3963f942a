"""The demo system: an `inventory` service, a `shop` baseline and a `shop` candidate with planted bugs.

All three are aiohttp apps in one process on one event loop, each on its own
ephemeral 127.0.0.1 port. The shop calls inventory over real HTTP, so a replay
exercises a real dependency and the W3C `traceparent` the replayer sets can be
followed into it.

Every answer is a pure function of the request, apart from the volatile fields
(`generated_at`, `request_id`, `order_id`, the `X-Request-Id` header, and a
`promo` that about one call in ten carries): the replayer sends each request
to baseline, baseline again and candidate, so any other server-side state
would show up as a difference that no code change caused. The one exception
is deliberate: orders (`POST /api/orders`, then `GET`/`PUT /api/orders/{id}`)
live in each shop's memory, so a replay needs the id each target returned.
Every random choice (the promo, the candidate's listing stalls) is drawn from
the replayed exchange's `traceparent`, as the tap's faults are (`call_random`):
a replay rerun with the same trace ids meets the same promos and stalls, so
the demo's exact check cannot flake.

Orders are authenticated: a bearer token that `POST /api/login` gave one of
the shop's test accounts (`DEMO_ACCOUNTS`, the sandbox's), or a production
user's JWT (the traffic generator's, `sub` = `user-N`, trusted as an identity
provider's). A recorded corpus holds neither (the recorder pseudonymizes
them), so replaying orders needs the demo's identities file
(`accounts.toml`): without it they answer 401 and the diff is INCONCLUSIVE.

The candidate is the same code with `candidate=True`; search for `PLANTED`
for what it changes (the constant `PLANTED` lists what a replay must report).
Reported: a price that turns into a string, a 500 for
the coupon `SPRING-XL`, a search 30 ms slower, a listing slower only at its
p99, a new `Cache-Control` header, reviews in another order, a field added
to recommendations and one removed from checkouts. Not reported with the
demo's rules (`rules.toml`): ratings no longer rounded (within tolerance)
and categories in another order (declared order-insensitive). Never in the
bundled corpus, for `replaydiff fuzz` to find: the candidate crashes (a plain
500) on a quote with an item of quantity 0, where the baseline answers 400.
Seen only through the tap (`replaydiff demo` puts one between the shops and
inventory, with the seeded faults of `faults.toml`): the candidate retries a
failed inventory call three times without backing off where the baseline
retries once after 50 ms, and waits only 150 ms for a reservation.

`python -m replaydiff.demo.services` prints one JSON line with the three URLs
and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import random
import secrets
import signal
import sys
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import aiohttp
from aiohttp import web

from replaydiff.corpora.trace import exchange_key, parse_traceparent

JSON = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# --- the catalog: deterministic data derived from product ids -------------------------------

CATEGORIES: dict[str, list[str]] = {
    "books": "atlas cookbook novel journal notebook almanac anthology guidebook poetry sketchbook".split(),
    "coffee": "espresso grinder kettle dripper mug filter beans tamper scale thermos".split(),
    "garden": "trowel hose planter seeds rake shears gloves lantern birdhouse compost".split(),
    "kitchen": "skillet whisk knife colander ladle apron teapot grater saucepan sieve".split(),
    "outdoor": "tent backpack hammock compass headlamp canteen stove tarp bivvy carabiner".split(),
    "toys": "kite puzzle yo-yo robot marbles blocks top dominoes train rocket".split(),
}
CATEGORY_NAMES = tuple(CATEGORIES)
ADJECTIVES = ("classic", "compact", "deluxe", "rustic", "nordic", "vintage", "sturdy")
PRODUCT_IDS = range(1, 1 + sum(len(nouns) for nouns in CATEGORIES.values()))
PAGE_SIZE = 6
CURRENCY = "EUR"
REVIEWERS = ("ana", "bo", "chidi", "dana", "emil", "fatima", "goran", "hana")
REVIEW_TITLES = ("Does the job", "Better than expected", "Broke after a week", "Great value", "Would buy again")
WAREHOUSES = ("ams-1", "fra-2", "dub-1")
FREE_SHIPPING_FROM_CENTS = 5000
SHIPPING_CENTS = 490
VAT_PERCENT = 21
COUPON_PERCENT_OFF = {"SPRING10": 10, "SPRING-XL": 20}
COUPON_AMOUNT_OFF_CENTS = {"WELCOME5": 500}
FREE_SHIPPING_COUPONS = frozenset({"FREESHIP"})
PROMOS = ("SPRING10", "FREESHIP", "WELCOME5")
PROMO_SHARE = 0.10
"""Of product pages that show a promo, drawn per call (per exchange and target): volatile only sometimes."""
SLOW_LISTING_SHARE = 0.03
SLOW_LISTING_S = 0.200
"""The candidate's listing stalls this long on this share of exchanges: a regression at p99 only."""

PLANTED = frozenset(
    {
        "GET /api/products/{id}|body|$.price",  # a number became a string
        "POST /api/cart/quote|status|",  # 500 for coupon SPRING-XL
        "GET /api/products|header|cache-control",  # a header added
        "GET /api/products/{id}/reviews|body|$.reviews",  # the same reviews in another order
        "GET /api/recommendations|body|$.strategy",  # a field added
        "POST /api/checkout|body|$.reservation_id",  # a field removed
        "GET /api/search|latency|p50",  # +30 ms on every call
        "GET /api/products|latency|p99",  # +200 ms on 3% of exchanges: only the tail moves
        # Under the tap's seeded faults (demo/faults.toml) the candidate retries inventory three times without
        # backoff where the baseline retries once, and gives up on a slow reservation sooner:
        "GET /api/products/{id}|retry|inventory",  # more retries after two 503s in a row...
        "GET /api/products/{id}|status|",  # ...so the candidate answers 200 where the baseline gave up (503)
        "POST /api/cart/quote|retry|inventory",
        "POST /api/checkout|retry|inventory",  # the reservation retried after the candidate's short timeout
        "POST /api/checkout|upstream|inventory",  # a timed-out call where the baseline waited for its answer
        "POST /api/checkout|status|",  # once, a third 503 in a row: the baseline gave up, the candidate did not
    }
)
"""What a replay of the bundled corpus through the candidate, with the demo's rules and faults, must report:
the fingerprints of the `# PLANTED` changes below. Not planted to be found: the rating drift within tolerance,
the category order the rules ignore, a `promo` field in one call in ten on both versions, and order ids only a
correlating replay can follow."""


def call_random(request: web.Request, purpose: str, *, per_target: bool = True) -> random.Random:
    """The random draws of one call, seeded by the replayed exchange's trace id, as the tap's faults are
    (`corpora.trace`): the same for a rerun with the same trace ids. `per_target`: each target's copy of the
    exchange draws on its own (a promo that differs between the two baselines is noise), else all alike (a
    stall hits the exchange). A call that no replay traced (the traffic generator, a person with curl) draws
    afresh."""
    trace_id, _ = parse_traceparent(request.headers.get("traceparent", ""))
    if not trace_id:
        return random.Random()
    return random.Random(f"{purpose}\0{trace_id if per_target else exchange_key(trace_id)}")


def category_of(product_id: int) -> str:
    return CATEGORY_NAMES[(product_id - 1) % len(CATEGORY_NAMES)]


def product_name(product_id: int) -> str:
    noun = CATEGORIES[category_of(product_id)][(product_id - 1) // len(CATEGORY_NAMES)]
    return f"{ADJECTIVES[product_id % len(ADJECTIVES)]} {noun}"


def price_cents(product_id: int) -> int:
    """Multiples of ten cents, so a price rendered as a string ("16.30") visibly differs from 16.3."""
    return 490 + (product_id * 1373) % 9000 // 10 * 10


def stock_available(product_id: int) -> int:
    """A few products (every 23rd) are out of stock, so quotes and checkouts see both cases."""
    return (product_id * 37) % 23


def product_summary(product_id: int) -> JSON:
    return {
        "id": product_id,
        "name": product_name(product_id),
        "category": category_of(product_id),
        "price": price_cents(product_id) / 100,
        "currency": CURRENCY,
    }


def reviews_of(product_id: int) -> list[JSON]:
    return [
        {
            "author": REVIEWERS[(product_id + i) % len(REVIEWERS)],
            "rating": 1 + (product_id * 3 + i * 2) % 5,
            "title": REVIEW_TITLES[(product_id + 2 * i) % len(REVIEW_TITLES)],
        }
        for i in range(product_id % 4)
    ]


def average_rating(product_id: int, *, rounded: bool = True) -> float | None:
    ratings = [review["rating"] for review in reviews_of(product_id)]
    if not ratings:
        return None
    average = sum(ratings) / len(ratings)
    return round(average, 2) if rounded else average


def search(query: str) -> list[int]:
    words = query.lower().split()
    return [
        product_id
        for product_id in PRODUCT_IDS
        if all(word in product_name(product_id) or word == category_of(product_id) for word in words)
    ]


def recommendations_for(product_id: int) -> list[int]:
    """The next four products of the same category, wrapping around."""
    same = [other for other in PRODUCT_IDS if category_of(other) == category_of(product_id)]
    start = same.index(product_id)
    return [same[(start + step) % len(same)] for step in range(1, 5)]


@dataclass(frozen=True, slots=True)
class Line:
    product_id: int
    quantity: int


def quote(lines: list[Line], available: dict[int, int], coupon: str | None) -> JSON:
    """Totals in integer cents, rendered as euros only at the end so the arithmetic is exact."""
    subtotal = sum(price_cents(line.product_id) * line.quantity for line in lines)
    code = (coupon or "").upper()
    discount = subtotal * COUPON_PERCENT_OFF.get(code, 0) // 100 + min(subtotal, COUPON_AMOUNT_OFF_CENTS.get(code, 0))
    free_shipping = code in FREE_SHIPPING_COUPONS or subtotal >= FREE_SHIPPING_FROM_CENTS
    shipping = 0 if free_shipping else SHIPPING_CENTS
    total = subtotal - discount + shipping
    return {
        "lines": [
            {
                **product_summary(line.product_id),
                "quantity": line.quantity,
                "line_total": price_cents(line.product_id) * line.quantity / 100,
                "in_stock": available.get(line.product_id, 0) >= line.quantity,
            }
            for line in lines
        ],
        "coupon": {"code": code, "applied": discount > 0 or code in FREE_SHIPPING_COUPONS} if code else None,
        "subtotal": subtotal / 100,
        "discount": discount / 100,
        "shipping": shipping / 100,
        "vat_included": total * VAT_PERCENT // (100 + VAT_PERCENT) / 100,
        "total": total / 100,
        "currency": CURRENCY,
    }


def items_json(lines: list[Line]) -> JSON:
    """The cart as the shop sends it to inventory, in the shape `cart_lines` parses."""
    return {"items": [asdict(line) for line in lines]}


def reservation_id(lines: list[Line]) -> str:
    """Derived from the items, not counted up: the same checkout must get the same answer every time."""
    digest = hashlib.sha256(json.dumps(items_json(lines)).encode()).hexdigest()
    return f"rsv-{digest[:16]}"


# --- request parsing shared by both services -----------------------------------------------


class ApiError(Exception):
    """Turned into a JSON error answer by the shop's middleware (and plain JSON by inventory's)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def known_product(raw: str | None) -> int:
    try:
        product_id = int(raw or "")
    except ValueError:
        raise ApiError(400, f"product id must be a number, got {raw!r}") from None
    if product_id not in PRODUCT_IDS:
        raise ApiError(404, f"no product {product_id}")
    return product_id


def positive_int(raw: str | None, name: str, default: int) -> int:
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise ApiError(400, f"{name} must be a number, got {raw!r}") from None
    if value < 1:
        raise ApiError(400, f"{name} must be at least 1")
    return value


async def json_body(request: web.Request) -> JSON:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body


def cart_lines(body: JSON) -> list[Line]:
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise ApiError(400, "items must be a non-empty list")
    lines = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("quantity"), int) or not 1 <= item["quantity"] <= 20:
            raise ApiError(400, "each item needs a product_id and a quantity from 1 to 20")
        lines.append(Line(known_product(str(item.get("product_id"))), item["quantity"]))
    return lines


# --- inventory -----------------------------------------------------------------------------

RECEIVED_TRACEPARENTS: web.AppKey[deque[str]] = web.AppKey("received_traceparents")


@web.middleware
async def inventory_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Remembers each `traceparent` received (a test hook: shows over HTTP that the shop propagated it); JSON errors."""
    if traceparent := request.headers.get("traceparent"):
        request.app[RECEIVED_TRACEPARENTS].append(traceparent)
    try:
        return await handler(request)
    except ApiError as error:
        return web.json_response({"error": str(error)}, status=error.status)


async def stock(request: web.Request) -> web.Response:
    product_id = known_product(request.match_info["id"])
    level = {"available": stock_available(product_id), "warehouse": WAREHOUSES[product_id % len(WAREHOUSES)]}
    return web.json_response({"product_id": product_id, **level})


async def stock_check(request: web.Request) -> web.Response:
    lines = cart_lines(await json_body(request))
    return web.json_response({"available": {str(line.product_id): stock_available(line.product_id) for line in lines}})


async def reserve(request: web.Request) -> web.Response:
    lines = cart_lines(await json_body(request))
    complete = all(stock_available(line.product_id) >= line.quantity for line in lines)
    return web.json_response({"reservation_id": reservation_id(lines), "complete": complete, "expires_in_s": 900})


async def received_traceparents(request: web.Request) -> web.Response:
    received = request.app[RECEIVED_TRACEPARENTS]
    return web.json_response({"received": list(received)})


def inventory_app() -> web.Application:
    app = web.Application(middlewares=[inventory_requests])
    app[RECEIVED_TRACEPARENTS] = deque(maxlen=256)
    app.router.add_get("/stock/{id}", stock)
    app.router.add_post("/stock/check", stock_check)
    app.router.add_post("/reservations", reserve)
    app.router.add_get("/debug/traceparents", received_traceparents)
    return app


# --- shop ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class InventoryCallPolicy:
    """How a shop calls inventory: how often it retries a failed call, after what pause, how long it waits."""

    retries: int
    backoff_s: float
    timeout_s: float = 2.0
    reservation_timeout_s: float = 2.0


BASELINE_POLICY = InventoryCallPolicy(retries=1, backoff_s=0.05)
CANDIDATE_POLICY = InventoryCallPolicy(
    retries=3,  # PLANTED: retries three times...
    backoff_s=0.0,  # PLANTED: ...without backing off
    reservation_timeout_s=0.15,  # PLANTED: gives up on a slow reservation sooner
)


class InventoryClient:
    """The shop's one pooled connection to inventory; forwards the caller's `traceparent` unchanged."""

    def __init__(self, base_url: str, policy: InventoryCallPolicy) -> None:
        self.base_url = base_url
        self.policy = policy
        self.session = aiohttp.ClientSession()

    async def call(
        self, incoming: web.Request, method: str, path: str, body: JSON | None = None, *, timeout_s: float | None = None
    ) -> JSON:
        """Retries a 5xx or a failed connection `policy.retries` times; then the shop answers 503."""
        headers = {"traceparent": tp} if (tp := incoming.headers.get("traceparent")) else {}
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.policy.timeout_s)
        problem = ""
        for attempt in range(self.policy.retries + 1):
            if attempt and self.policy.backoff_s:
                await asyncio.sleep(self.policy.backoff_s * 2 ** (attempt - 1))
            try:
                async with self.session.request(
                    method, self.base_url + path, json=body, headers=headers, timeout=timeout
                ) as response:
                    if response.status == 200:
                        answer: JSON = await response.json()
                        return answer
                    problem = f"inventory answered {response.status}"
                    if response.status < 500:
                        break
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                problem = f"inventory unavailable ({type(exc).__name__})"
        raise ApiError(503, problem)


INVENTORY = web.AppKey("inventory", InventoryClient)
CANDIDATE = web.AppKey("candidate", bool)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors are answers like any other: JSON, with the same volatile fields."""
    try:
        return await handler(request)
    except ApiError as error:
        return reply({"error": str(error)}, status=error.status)
    except web.HTTPException as error:
        return reply({"error": error.reason.lower()}, status=error.status)


def reply(payload: JSON, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Every shop answer carries a timestamp and an id that differ on every call, as real services' do."""
    request_id = str(uuid.uuid4())
    generated_at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    body = {**payload, "generated_at": generated_at, "request_id": request_id}
    return web.json_response(body, status=status, headers={"X-Request-Id": request_id, **(headers or {})})


async def health(request: web.Request) -> web.Response:
    return reply({"status": "ok"})


async def categories(request: web.Request) -> web.Response:
    counts = {name: sum(1 for pid in PRODUCT_IDS if category_of(pid) == name) for name in CATEGORY_NAMES}
    listed = [{"slug": name, "product_count": n} for name, n in counts.items()]
    if request.app[CANDIDATE]:
        listed.reverse()  # PLANTED: another order, which the demo's rules declare irrelevant
    return reply({"categories": listed})


async def products(request: web.Request) -> web.Response:
    category = request.query.get("category") or None
    if category is not None and category not in CATEGORIES:
        raise ApiError(404, f"no category {category!r}")
    page = positive_int(request.query.get("page"), "page", 1)
    matching = [pid for pid in PRODUCT_IDS if category in (None, category_of(pid))]
    shown = matching[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    pages = -(-len(matching) // PAGE_SIZE)
    listing = [product_summary(p) for p in shown]
    payload = {"page": page, "pages": pages, "total": len(matching), "products": listing}
    if not request.app[CANDIDATE]:
        return reply(payload)
    if call_random(request, "stall", per_target=False).random() < SLOW_LISTING_SHARE:
        await asyncio.sleep(SLOW_LISTING_S)  # PLANTED: a stall on a few calls: slower at p99, not at p50
    return reply(payload, headers={"Cache-Control": "public, max-age=60"})  # PLANTED: a new header


async def product(request: web.Request) -> web.Response:
    product_id = known_product(request.match_info["id"])
    level = await request.app[INVENTORY].call(request, "GET", f"/stock/{product_id}")
    candidate = request.app[CANDIDATE]
    detail = {
        **product_summary(product_id),
        "rating": average_rating(product_id, rounded=not candidate),  # PLANTED (candidate): a drift below 0.01
        "review_count": len(reviews_of(product_id)),
        "stock": {"available": level["available"], "warehouse": level["warehouse"]},
    }
    draw = call_random(request, "promo")
    if draw.random() < PROMO_SHARE:
        detail["promo"] = draw.choice(PROMOS)  # volatile, but only sometimes: noise, on both versions
    if candidate:
        detail["price"] = f"{price_cents(product_id) / 100:.2f}"  # PLANTED: the price becomes a string
    return reply(detail)


async def reviews(request: web.Request) -> web.Response:
    product_id = known_product(request.match_info["id"])
    listed = reviews_of(product_id)
    if request.app[CANDIDATE]:
        listed.reverse()  # PLANTED: newest first: the same reviews in another order, which is reported
    return reply({"product_id": product_id, "reviews": listed})


async def search_products(request: web.Request) -> web.Response:
    query = request.query.get("q", "").strip()
    if not query:
        raise ApiError(400, "query parameter q is required")
    if request.app[CANDIDATE]:
        await asyncio.sleep(0.030)  # PLANTED: search got 30 ms slower
    found = search(query)
    return reply({"query": query, "total": len(found), "results": [product_summary(p) for p in found[:20]]})


async def recommendations(request: web.Request) -> web.Response:
    product_id = known_product(request.query.get("for"))
    payload = {"for": product_id, "products": [product_summary(p) for p in recommendations_for(product_id)]}
    if request.app[CANDIDATE]:
        payload["strategy"] = "same-category"  # PLANTED: a field added
    return reply(payload)


async def priced_cart(request: web.Request, body: JSON) -> tuple[list[Line], JSON]:
    lines = cart_lines(body)
    coupon = body.get("coupon")
    if coupon is not None and not isinstance(coupon, str):
        raise ApiError(400, "coupon must be a string or null")
    stock_levels = await request.app[INVENTORY].call(request, "POST", "/stock/check", items_json(lines))
    available = {int(pid): n for pid, n in stock_levels["available"].items()}
    return lines, quote(lines, available, coupon)


async def cart_quote(request: web.Request) -> web.Response:
    body = await json_body(request)
    if request.app[CANDIDATE] and str(body.get("coupon", "")).upper() == "SPRING-XL":
        raise ApiError(500, "internal server error")  # PLANTED: the candidate fails on one coupon
    items = body.get("items")
    if request.app[CANDIDATE] and isinstance(items, list) and any(
        isinstance(item, dict) and item.get("quantity") == 0 for item in items
    ):
        raise ZeroDivisionError("unit price of a zero quantity")  # PLANTED: a crash the corpus never triggers
    _, totals = await priced_cart(request, body)
    return reply(totals)


async def checkout(request: web.Request) -> web.Response:
    lines, totals = await priced_cart(request, await json_body(request))
    inventory = request.app[INVENTORY]
    reservation = await inventory.call(
        request, "POST", "/reservations", items_json(lines), timeout_s=inventory.policy.reservation_timeout_s
    )
    order = {
        "order_id": str(uuid.uuid4()),
        "status": "confirmed" if reservation["complete"] else "backordered",
        "reservation_id": reservation["reservation_id"],
        **totals,
    }
    if request.app[CANDIDATE]:
        del order["reservation_id"]  # PLANTED: a field removed
    return reply(order, status=201)


# --- orders: the one stateful resource, for the replayer's id correlation -------------------

ORDERS: web.AppKey[dict[str, JSON]] = web.AppKey("orders", dict)
TOKENS: web.AppKey[dict[str, str]] = web.AppKey("tokens", dict)
"""Bearer token → test account, from `POST /api/login`; each shop keeps its own."""
DEMO_ACCOUNTS = {"demo-ada": "ada-demo-pass", "demo-lin": "lin-demo-pass"}
"""The sandbox's test accounts (`accounts.toml` names them for the replay)."""


async def login(request: web.Request) -> web.Response:
    body = await json_body(request)
    user = body.get("username")
    if not isinstance(user, str) or DEMO_ACCOUNTS.get(user) != body.get("password"):
        raise ApiError(401, "unknown username or password")
    token = secrets.token_urlsafe(24)
    request.app[TOKENS][token] = user
    return reply({"token": token, "user": user})


def signed_in(request: web.Request) -> None:
    """A test account's token, or a production user's JWT; anything else (a pseudonym, a mask) is a 401."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not (token in request.app[TOKENS] or _production_user(token)):
        raise ApiError(401, "sign in to see orders")


def _production_user(token: str) -> bool:
    claims = token.split(".")[1] if token.count(".") == 2 else ""
    try:
        subject = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4))).get("sub", "")
    except (binascii.Error, ValueError, AttributeError):
        return False
    return isinstance(subject, str) and subject.startswith("user-") and subject[5:].isdigit()


def order_document(order_id: str, lines: list[Line], status: str, note: str | None) -> JSON:
    subtotal = sum(price_cents(line.product_id) * line.quantity for line in lines)
    return {
        "id": order_id,
        "status": status,
        "items": [asdict(line) for line in lines],
        "note": note,
        "total": subtotal / 100,
        "currency": CURRENCY,
    }


def optional_note(body: JSON) -> str | None:
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        raise ApiError(400, "note must be a string or null")
    return note


async def create_order(request: web.Request) -> web.Response:
    """A fresh id per call, as real services hand out: replaying the follow-up requests needs correlation."""
    signed_in(request)
    body = await json_body(request)
    order_id = str(uuid.uuid4())
    order = order_document(order_id, cart_lines(body), "created", optional_note(body))
    request.app[ORDERS][order_id] = order
    return reply(order, status=201, headers={"Location": f"/api/orders/{order_id}"})


def stored_order(request: web.Request) -> JSON:
    order = request.app[ORDERS].get(request.match_info["id"])
    if order is None:
        raise ApiError(404, "no such order")
    return order


async def read_order(request: web.Request) -> web.Response:
    signed_in(request)
    return reply(stored_order(request))


async def update_order(request: web.Request) -> web.Response:
    signed_in(request)
    order = stored_order(request)
    body = await json_body(request)
    lines = cart_lines(body) if "items" in body else [Line(**item) for item in order["items"]]
    note = optional_note(body) if "note" in body else order["note"]
    updated = order_document(order["id"], lines, "updated", note)
    request.app[ORDERS][order["id"]] = updated
    return reply(updated)


def shop_app(inventory_url: str, *, candidate: bool) -> web.Application:
    app = web.Application(middlewares=[json_errors])
    app[CANDIDATE] = candidate
    app[ORDERS] = {}
    app[TOKENS] = {}

    async def inventory_client(app: web.Application) -> AsyncIterator[None]:
        app[INVENTORY] = InventoryClient(inventory_url, CANDIDATE_POLICY if candidate else BASELINE_POLICY)
        yield
        await app[INVENTORY].session.close()

    app.cleanup_ctx.append(inventory_client)
    app.router.add_get("/api/health", health)
    app.router.add_get("/api/categories", categories)
    app.router.add_get("/api/products", products)
    app.router.add_get("/api/products/{id}", product)
    app.router.add_get("/api/products/{id}/reviews", reviews)
    app.router.add_get("/api/search", search_products)
    app.router.add_get("/api/recommendations", recommendations)
    app.router.add_post("/api/cart/quote", cart_quote)
    app.router.add_post("/api/checkout", checkout)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/orders", create_order)
    app.router.add_get("/api/orders/{id}", read_order)
    app.router.add_put("/api/orders/{id}", update_order)
    return app


# --- running them --------------------------------------------------------------------------

SHUTDOWN_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class DemoUrls:
    inventory: str
    baseline: str
    candidate: str


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serves `app` on an ephemeral 127.0.0.1 port and yields its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def _no_inventory() -> AsyncIterator[str]:
    yield ""


@asynccontextmanager
async def demo_services(*, inventory_via: str | None = None, with_inventory: bool = True) -> AsyncIterator[DemoUrls]:
    """All three services on the current event loop, for in-process use.

    `inventory_via`: where the shops reach inventory instead of directly, e.g. a tap in between;
    `with_inventory=False` (only with `inventory_via`, a mocking tap): no inventory runs at all.
    """
    async with _running_services(inventory_via, with_inventory) as (urls, _):
        yield urls


@asynccontextmanager
async def _running_services(
    inventory_via: str | None, with_inventory: bool = True
) -> AsyncIterator[tuple[DemoUrls, list[web.Application]]]:
    async with serving(inventory_app()) if with_inventory else _no_inventory() as inventory:
        reach = inventory_via or inventory
        shops = [shop_app(reach, candidate=False), shop_app(reach, candidate=True)]
        async with serving(shops[0]) as baseline, serving(shops[1]) as candidate:
            yield DemoUrls(inventory=inventory, baseline=baseline, candidate=candidate), shops


READ_VIA_FROM_STDIN = "-"
"""`--inventory-via -`: the address comes on stdin once the URLs are printed: a tap in front of inventory can
only start once inventory's address is known, and then binds a port of its own choosing, so no other process
can take it in between."""


async def serve_until_signalled(inventory_via: str | None, with_inventory: bool = True) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    later = inventory_via == READ_VIA_FROM_STDIN
    async with _running_services(None if later else inventory_via, with_inventory) as (urls, shops):
        print(json.dumps(asdict(urls)), flush=True)
        if later:
            via = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            for shop in shops:
                shop[INVENTORY].base_url = via
            print(json.dumps({"inventory_via": via}), flush=True)
        await stop.wait()


def main() -> int:
    """`--inventory-via URL` makes the shops call inventory through that address (the demo's tap); `-` reads
    it from stdin after the URLs are printed. `--without-inventory` then starts no inventory (the tap mocks it)."""
    args = sys.argv[1:]
    with_inventory = "--without-inventory" not in args
    args = [arg for arg in args if arg != "--without-inventory"]
    via = args[1] if len(args) == 2 and args[0] == "--inventory-via" else None
    asyncio.run(serve_until_signalled(via, with_inventory or not via))
    return 0


if __name__ == "__main__":
    sys.exit(main())
