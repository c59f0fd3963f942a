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

from corpora import endpoint_of
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

VOLATILE = ("generated_at", "request_id", "order_id")
# The corpus stores these masked; the services must accept any value.
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
]
UNPLANTED = [e for e in ENDPOINTS if e[1] not in ("/api/products/7", "/api/search?q=rustic")]


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
    assert baseline.status_code in (200, 201, 404)


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


def test_planted_search_slowdown(demo: DemoSystem, client: httpx.Client) -> None:
    def fastest(base: str) -> float:
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            call(client, base, "GET", "/api/search?q=rustic").raise_for_status()
            timings.append(time.perf_counter() - started)
        return min(timings)

    baseline, candidate = fastest(demo.baseline), fastest(demo.candidate)
    assert candidate >= 0.025
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
    system = DemoSystem()
    with httpx.Client(trust_env=False) as keep_alive:
        with system:
            keep_alive.get(system.baseline + "/api/health").raise_for_status()  # an idle connection stays open
            started = time.monotonic()
        stopping = time.monotonic() - started
    assert system.returncode == 0
    assert stopping < 3.0


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
    assert len(endpoints) == 9
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
