"""Coverage items: what a curated corpus must keep of the corpus it came from.

An exchange covers:
- its endpoint;
- endpoint × request shape × response status class × response shape (`shape …` items);
- each request header name (`request header …`): a rare header is a client or a code path of its own;
- each response header name per endpoint (`response header …`);
- each value of a request field that takes few values in the whole corpus (`value …`): a coupon code, a sort
  order, a flag; fields with more than `CATEGORICAL_LIMIT` values (ids, search words) are not categorical.

`CoverageScan` reads a corpus once and keeps per session only the numbers of the items it covers and its
exchanges per endpoint: memory grows with sessions and distinct items, not with exchanges.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from replaydiff.corpora import Exchange, endpoint_of
from replaydiff.curation.shapes import header_names, request_shape, response_shape, scalar_values, status_class
from replaydiff.curation.streams import exchanges, session_of

CATEGORICAL_LIMIT = 16
"""A request field with at most this many distinct values in the corpus has each value as a coverage item."""
MAX_VALUE_CHARS = 64


def endpoint_of_exchange(exchange: Exchange) -> str:
    """The one endpoint templating of replaydiff, so curation groups as the replay and the diff do."""
    return endpoint_of(exchange.request.method, exchange.request.path)


def exchange_items(exchange: Exchange, endpoint: str) -> Iterator[str]:
    """The coverage items of one exchange, apart from categorical values (which need the whole corpus)."""
    yield f"endpoint {endpoint}"
    yield f"shape {endpoint} | {request_shape(exchange)} | {status_class(exchange)} | {response_shape(exchange)}"
    for name in header_names(exchange.request.headers):
        yield f"request header {name}"
    if exchange.response is not None:
        for name in header_names(exchange.response.headers):
            yield f"response header {endpoint} {name}"


@dataclass(slots=True)
class SessionProfile:
    key: str
    exchanges: int = 0
    items: set[int] = field(default_factory=set)
    endpoints: dict[int, int] = field(default_factory=dict)
    """Endpoint number → exchanges of that endpoint in the session."""


class CoverageIndex:
    """Numbers for item names, and the bookkeeping that decides which fields are categorical."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._numbers: dict[str, int] = {}
        self.endpoint_names: list[str] = []
        self._endpoint_numbers: dict[str, int] = {}
        self._values: dict[str, dict[str, int]] = {}
        """Location → value → item number, until the location has more than `CATEGORICAL_LIMIT` values."""
        self._too_many: set[str] = set()
        self.dropped: set[int] = set()
        """Item numbers of values of locations found not to be categorical after all."""

    def item(self, name: str) -> int:
        number = self._numbers.get(name)
        if number is None:
            number = self._numbers[name] = len(self.names)
            self.names.append(name)
        return number

    def endpoint(self, name: str) -> int:
        number = self._endpoint_numbers.get(name)
        if number is None:
            number = self._endpoint_numbers[name] = len(self.endpoint_names)
            self.endpoint_names.append(name)
        return number

    def value(self, location: str, value: str) -> int | None:
        if location in self._too_many or len(value) > MAX_VALUE_CHARS:
            return None
        values = self._values.setdefault(location, {})
        number = values.get(value)
        if number is None:
            if len(values) >= CATEGORICAL_LIMIT:
                self._too_many.add(location)
                self.dropped.update(values.values())
                del self._values[location]
                return None
            number = values[value] = self.item(f"value {location}={value}")
        return number

    def valid(self, number: int) -> bool:
        return number not in self.dropped


@dataclass(slots=True)
class CoverageScan:
    """One pass over a corpus: its coverage items, and each session's share of them."""

    index: CoverageIndex = field(default_factory=CoverageIndex)
    sessions: list[SessionProfile] = field(default_factory=list)
    """In order of first appearance, which makes every choice among them deterministic."""
    exchanges: int = 0
    endpoint_totals: array[int] = field(default_factory=lambda: array("q"))
    """Exchanges per endpoint number in the whole corpus."""

    def add(self, exchange: Exchange, profile: SessionProfile) -> str:
        """Counts the exchange into its session's profile; returns its endpoint."""
        endpoint = endpoint_of_exchange(exchange)
        index = self.index
        number = index.endpoint(endpoint)
        while len(self.endpoint_totals) <= number:
            self.endpoint_totals.append(0)
        self.endpoint_totals[number] += 1
        self.exchanges += 1
        profile.exchanges += 1
        profile.endpoints[number] = profile.endpoints.get(number, 0) + 1
        profile.items.update(index.item(name) for name in exchange_items(exchange, endpoint))
        for location, value in scalar_values(exchange):
            item = index.value(f"{endpoint} {location}", value)
            if item is not None:
                profile.items.add(item)
        return endpoint

    def finish(self) -> None:
        """Forget the values of fields that turned out not to be categorical."""
        if self.index.dropped:
            for profile in self.sessions:
                profile.items -= self.index.dropped

    def items(self) -> set[int]:
        covered: set[int] = set()
        for profile in self.sessions:
            covered |= profile.items
        return covered

    def item_names(self) -> set[str]:
        names = self.index.names
        return {names[number] for number in self.items()}


def missing_from(curated: CoverageScan, source: CoverageScan) -> list[str]:
    """The source's coverage items the curated corpus lacks, by name (each scan numbers its own items)."""
    return sorted(source.item_names() - curated.item_names())


def scan(path: Path, observe: Callable[[Exchange, str], None] | None = None) -> CoverageScan:
    return scan_exchanges(exchanges(path), observe)


def scan_exchanges(stream: Iterable[Exchange], observe: Callable[[Exchange, str], None] | None = None) -> CoverageScan:
    """`observe(exchange, endpoint)` sees every exchange too, for statistics gathered in the same pass."""
    result = CoverageScan()
    profiles: dict[str, SessionProfile] = {}
    for exchange in stream:
        key = session_of(exchange)
        profile = profiles.get(key)
        if profile is None:
            profile = profiles[key] = SessionProfile(key)
            result.sessions.append(profile)
        endpoint = result.add(exchange, profile)
        if observe is not None:
            observe(exchange, endpoint)
    result.finish()
    return result
