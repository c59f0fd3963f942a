"""The demo system, against the real services in their own process: what agrees, what is planted, what is noise."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from replaydiff.corpora import endpoint_of
from replaydiff.replayer.tracing import trace_id_for, traceparent
from replaydiff.demo.services import demo_services
from replaydiff.demo.system import DemoSystem, DemoSystemError, _parse_urls
from replaydiff.demo.traffic import (
    DEFAULT_SEED,
    DEFAULT_SESSIONS,
    MIN_EXCHANGES,
    SPRING_XL_SESSIONS,
    play,
    plan_sessions,
)

VOLATILE = ("generated_at", "request_id", "order_id", "promo")
# The corpus stores these pseudonymized; the services accept any value, apart from the orders (a 401).
CLIENT_HEADERS = {"Authorization": "Bearer ********", "Cookie": "sid=********", "User-Agent": "pytest"}
CART = {"items": [{"product_id": 3, "quantity": 2}, {"product_id": 23, "quantity": 1}], "coupon": "SPRING10"}

ENDPOINTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/health", None),
    ("GET", "/api/categories", None),
    ("GET", "/api/products?category=coffee&page=2", None),
    ("GET", "/api/products/7", None),
    ("GET", "/api/products/7/reviews", None),
    ("GET", "/api/search?q=rustic", None),
    ("GET", "/api/recommendations?for=7", None),
    ("POST", "/api/cart/quote", CART),
    ("POST", "/api/checkout", CART),
    ("GET", "/api/products/9999", None),
    ("GET", "/api/orders/0b5e0c7e-3c1f-4a51-9f0e-5d1f1a2b3c4d", None),
]
PLANTED_PATHS = ("/api/categories", "/api/products?category=coffee&page=2", "/api/products/7",
                 "/api/products/7/reviews", "/api/search?q=rustic", "/api/recommendations?for=7", "/api/checkout")  # fmt: skip
UNPLANTED = [e for e in ENDPOINTS if e[1] not in PLANTED_PATHS]


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoSystem]:
    with DemoSystem() as system:
        yield system


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(headers=CLIENT_HEADERS, trust_env=False, timeout=5.0) as session:
        yield session


def call(client: httpx.Client, base: str, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return client.request(method, base + path, json=body)


def stable(response: httpx.Response) -> tuple[int, dict[str, Any]]:
    return response.status_code, {k: v for k, v in response.json().items() if k not in VOLATILE}


@pytest.mark.parametrize(("method", "path", "body"), UNPLANTED, ids=[f"{m} {p}" for m, p, _ in UNPLANTED])
def test_baseline_and_candidate_agree_apart_from_volatile_fields(
    demo: DemoSystem, client: httpx.Client, method: str, path: str, body: dict[str, Any] | None
) -> None:
    baseline = call(client, demo.baseline, method, path, body)
    candidate = call(client, demo.candidate, method, path, body)
    assert stable(baseline) == stable(candidate)
    assert baseline.status_code in (200, 201, 401, 404)  # 401: orders need a signed-in account


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_volatile_fields_differ_between_two_baseline_calls(
    demo: DemoSystem, client: httpx.Client, method: str, path: str, body: dict[str, Any] | None
) -> None:
    first, second = (call(client, demo.baseline, method, path, body) for _ in range(2))
    assert stable(first) == stable(second)
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]
    for field in ("generated_at", "request_id"):
        assert first.json()[field] != second.json()[field]


def test_checkout_order_ids_are_volatile(demo: DemoSystem, client: httpx.Client) -> None:
    orders = [call(client, demo.baseline, "POST", "/api/checkout", CART).json() for _ in range(2)]
    assert uuid.UUID(orders[0]["order_id"]) != uuid.UUID(orders[1]["order_id"])


def test_planted_price_turns_into_a_string(demo: DemoSystem, client: httpx.Client) -> None:
    baseline = call(client, demo.baseline, "GET", "/api/products/7").json()
    candidate = call(client, demo.candidate, "GET", "/api/products/7").json()
    assert isinstance(baseline["price"], float)
    assert candidate["price"] == f"{baseline['price']:.2f}"


def test_planted_500_for_spring_xl_only_in_the_candidate(demo: DemoSystem, client: httpx.Client) -> None:
    cart = {**CART, "coupon": "SPRING-XL"}
    baseline = call(client, demo.baseline, "POST", "/api/cart/quote", cart)
    assert baseline.status_code == 200
    assert baseline.json()["coupon"] == {"code": "SPRING-XL", "applied": True}
    assert call(client, demo.candidate, "POST", "/api/cart/quote", cart).status_code == 500


def test_planted_answers_that_differ_only_in_the_candidate(demo: DemoSystem, client: httpx.Client) -> None:
    def both(method: str, path: str, body: dict[str, Any] | None = None) -> tuple[httpx.Response, httpx.Response]:
        return call(client, demo.baseline, method, path, body), call(client, demo.candidate, method, path, body)

    baseline, candidate = both("GET", "/api/categories")
    assert candidate.json()["categories"] == baseline.json()["categories"][::-1]
    baseline, candidate = both("GET", "/api/products?page=1")
    assert "Cache-Control" not in baseline.headers and candidate.headers["Cache-Control"] == "public, max-age=60"
    baseline, candidate = both("GET", "/api/products/7/reviews")  # 7 % 4 = 3 reviews
    assert candidate.json()["reviews"] == baseline.json()["reviews"][::-1] != baseline.json()["reviews"]
    baseline, candidate = both("GET", "/api/products/6")  # two reviews: an average of 2.5 either way
    assert candidate.json()["rating"] == baseline.json()["rating"]
    baseline, candidate = both("GET", "/api/products/7")  # three reviews: 2.33 against 2.333…
    assert 0 < abs(candidate.json()["rating"] - baseline.json()["rating"]) < 0.01
    baseline, candidate = both("GET", "/api/recommendations?for=7")
    assert "strategy" not in baseline.json() and candidate.json()["strategy"] == "same-category"
    baseline, candidate = both("POST", "/api/checkout", CART)
    assert "reservation_id" in baseline.json() and "reservation_id" not in candidate.json()


def _traced_promo(client: httpx.Client, base: str, exchange: int, target: str) -> str | None:
    trace_id = trace_id_for("promo-test", f"x{exchange}", target)
    answer = client.get(base + "/api/products/7", headers={"traceparent": traceparent(trace_id, "1" * 16)})
    promo: str | None = answer.json().get("promo")
    return promo


def test_a_promo_appears_in_one_call_in_ten_and_a_rerun_of_a_replay_meets_the_same(
    demo: DemoSystem, client: httpx.Client
) -> None:
    """Drawn from the replayed exchange's trace id (each target's copy on its own), never from a global generator:
    the demo's exact check cannot flake."""
    baseline = [_traced_promo(client, demo.baseline, number, "baseline") for number in range(200)]
    assert 5 <= sum(p is not None for p in baseline) <= 40  # one call in ten, over 200 independent exchanges
    assert [_traced_promo(client, demo.baseline, number, "baseline") for number in range(200)] == baseline
    baseline2 = [_traced_promo(client, demo.baseline, number, "baseline2") for number in range(200)]
    assert baseline2 != baseline  # noise between the two baselines, learned as such


def test_orders_need_a_signed_in_account(demo: DemoSystem, client: httpx.Client) -> None:
    """Masked or pseudonymized recorded tokens are refused; a test account's token from the login is not."""
    order = {"items": [{"product_id": 3, "quantity": 2}]}
    assert call(client, demo.baseline, "POST", "/api/orders", order).status_code == 401
    assert call(client, demo.baseline, "POST", "/api/login", {"username": "demo-ada", "password": "no"}).status_code == 401
    token = call(client, demo.baseline, "POST", "/api/login", {"username": "demo-ada", "password": "ada-demo-pass"})
    signed_in = client.post(demo.baseline + "/api/orders", json=order,
                            headers={"Authorization": f"Bearer {token.json()['token']}"})  # fmt: skip
    assert signed_in.status_code == 201


def test_orders_are_created_read_and_updated_by_the_id_each_shop_returns(
    demo: DemoSystem, client: httpx.Client
) -> None:
    for base in (demo.baseline, demo.candidate):
        token = call(client, base, "POST", "/api/login", {"username": "demo-lin", "password": "lin-demo-pass"})
        client.headers["Authorization"] = f"Bearer {token.json()['token']}"
        created = call(client, base, "POST", "/api/orders", {"items": [{"product_id": 3, "quantity": 2}]})
        assert created.status_code == 201
        order_id = created.json()["id"]
        assert uuid.UUID(order_id) and created.headers["Location"] == f"/api/orders/{order_id}"
        read = call(client, base, "GET", f"/api/orders/{order_id}")
        assert stable(read) == (200, {k: v for k, v in created.json().items() if k not in VOLATILE})
        updated = call(client, base, "PUT", f"/api/orders/{order_id}", {"note": "ring twice"})
        assert (updated.status_code, updated.json()["status"], updated.json()["note"]) == (200, "updated", "ring twice")
        assert call(client, base, "GET", f"/api/orders/{order_id}").json()["note"] == "ring twice"
    other_shop = call(client, demo.candidate, "GET", f"/api/orders/{order_id}".replace(order_id, str(uuid.uuid4())))
    assert other_shop.status_code == 404
    client.headers["Authorization"] = CLIENT_HEADERS["Authorization"]


def test_planted_search_slowdown(demo: DemoSystem, client: httpx.Client) -> None:
    def fastest(base: str) -> float:
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            call(client, base, "GET", "/api/search?q=rustic").raise_for_status()
            timings.append(time.perf_counter() - started)
        return min(timings)

    baseline, candidate = fastest(demo.baseline), fastest(demo.candidate)
    assert candidate >= 0.025  # a floor, never flaky: the planted sleep of 30 ms (less a coarse timer's rounding)
    assert baseline < candidate


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/api/products/5"), ("POST", "/api/cart/quote"), ("POST", "/api/checkout")]
)
def test_traceparent_is_propagated_to_inventory(demo: DemoSystem, client: httpx.Client, method: str, path: str) -> None:
    traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    body = CART if method == "POST" else None
    client.request(method, demo.candidate + path, json=body, headers={"traceparent": traceparent}).raise_for_status()
    assert traceparent in client.get(demo.inventory + "/debug/traceparents").json()["received"]


def test_bad_requests_get_json_errors(demo: DemoSystem, client: httpx.Client) -> None:
    assert call(client, demo.baseline, "GET", "/api/search").status_code == 400
    assert call(client, demo.baseline, "GET", "/api/products?category=nope").status_code == 404
    quote = call(client, demo.baseline, "POST", "/api/cart/quote", {"items": [{"product_id": 999, "quantity": 1}]})
    assert quote.status_code == 404
    assert quote.json()["error"] == "no product 999"


def test_sigterm_stops_the_services_with_exit_code_0() -> None:
    """An idle kept-alive connection must not hold the shutdown for aiohttp's default minute: given half of that,
    the services exit by themselves (0), or are killed (a negative code)."""
    system = DemoSystem(stop_timeout=30)
    with httpx.Client(trust_env=False) as keep_alive:
        with system:
            keep_alive.get(system.baseline + "/api/health").raise_for_status()  # an idle connection stays open
    assert system.returncode == 0


def test_garbage_instead_of_urls_is_a_clear_error() -> None:
    with pytest.raises(DemoSystemError, match="instead of their URLs"):
        _parse_urls(b"Traceback (most recent call last):\n")


def test_in_process_api_serves_the_same_system() -> None:
    async def scenario() -> tuple[Any, Any]:
        async with demo_services() as urls, httpx.AsyncClient(trust_env=False) as session:
            baseline = await session.get(urls.baseline + "/api/products/7")
            candidate = await session.get(urls.candidate + "/api/products/7")
            return baseline.json()["price"], candidate.json()["price"]

    assert asyncio.run(scenario()) == (11.0, "11.00")


def test_default_traffic_plan_covers_every_endpoint_and_the_rare_coupon() -> None:
    plan = plan_sessions(DEFAULT_SESSIONS, seed=DEFAULT_SEED)
    steps = [step for session in plan for step in session.steps]
    endpoints = {endpoint_of(step.method, urlsplit(step.target).path) for step in steps}
    spring_xl = [step for step in steps if step.body and step.body.get("coupon") == "SPRING-XL"]
    assert len(steps) >= MIN_EXCHANGES
    assert len(endpoints) == 12
    orders = [step for step in steps if step.target.startswith("/api/orders")]
    assert orders[0].remember == "order" and orders[1].target == "/api/orders/{order}"
    assert [step.target for step in spring_xl] == ["/api/cart/quote"] * SPRING_XL_SESSIONS
    assert all({"Authorization", "Cookie"} <= session.headers.keys() for session in plan[1:])
    assert plan == plan_sessions(DEFAULT_SESSIONS, seed=DEFAULT_SEED)
    assert plan != plan_sessions(DEFAULT_SESSIONS, seed=DEFAULT_SEED + 1)


def test_a_short_traffic_plan_plays_against_the_baseline(demo: DemoSystem) -> None:
    statuses: Counter[int] = Counter()
    plan = plan_sessions(12, seed=1, window_s=0.5)
    fast = [replace(s, steps=[replace(step, think_s=0.0) for step in s.steps]) for s in plan[1:]]
    asyncio.run(play(fast, demo.baseline, lambda status: statuses.update([status])))
    assert sum(statuses.values()) == sum(len(s.steps) for s in fast)
    assert set(statuses) <= {200, 201, 404}
    assert statuses[201] >= 1  # orders created, and read back by their id without a 404 from the journey
