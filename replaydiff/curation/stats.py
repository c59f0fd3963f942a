"""`corpus stats`: what a corpus holds, per endpoint, and the coverage a curated corpus is measured against."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replaydiff.corpora import CorpusReader, Exchange
from replaydiff.corpora.grpc import outcome_label
from replaydiff.curation.coverage import CoverageScan, scan
from replaydiff.curation.shapes import header_names, query_keys, request_shape, response_shape

MAX_SHAPES = 1000
"""Distinct shapes counted per endpoint and kind; beyond, they are counted together as `(other shapes)`."""
OTHER = "(other shapes)"


def _count_bounded(counter: Counter[str], key: str) -> None:
    if key in counter or len(counter) < MAX_SHAPES:
        counter[key] += 1
    else:
        counter[OTHER] += 1


@dataclass(slots=True)
class EndpointStats:
    exchanges: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    request_shapes: Counter[str] = field(default_factory=Counter)
    response_shapes: Counter[str] = field(default_factory=Counter)
    query_keys: Counter[str] = field(default_factory=Counter)
    header_sets: Counter[str] = field(default_factory=Counter)
    request_bytes: int = 0
    response_bytes: int = 0
    max_response_bytes: int = 0

    def add(self, exchange: Exchange) -> None:
        self.exchanges += 1
        response = exchange.response
        self.statuses[outcome_label(response)] += 1
        _count_bounded(self.request_shapes, request_shape(exchange))
        _count_bounded(self.response_shapes, response_shape(exchange))
        _count_bounded(self.query_keys, query_keys(exchange.request.query))
        _count_bounded(self.header_sets, ",".join(header_names(exchange.request.headers)))
        self.request_bytes += len(exchange.request.body)
        size = len(response.body) if response else 0
        self.response_bytes += size
        self.max_response_bytes = max(self.max_response_bytes, size)

    def to_json(self) -> dict[str, Any]:
        return {
            "exchanges": self.exchanges,
            "statuses": dict(sorted(self.statuses.items())),
            "request_shapes": dict(self.request_shapes.most_common()),
            "response_shapes": dict(self.response_shapes.most_common()),
            "query_keys": dict(self.query_keys.most_common()),
            "request_header_sets": dict(self.header_sets.most_common()),
            "request_bytes": self.request_bytes,
            "response_bytes": self.response_bytes,
            "max_response_bytes": self.max_response_bytes,
        }


@dataclass(slots=True)
class CorpusStatistics:
    path: Path
    header: dict[str, Any]
    coverage: CoverageScan
    endpoints: dict[str, EndpointStats] = field(default_factory=dict)
    first_us: int | None = None
    last_us: int = 0

    def observe(self, exchange: Exchange, endpoint: str) -> None:
        stats = self.endpoints.get(endpoint)
        if stats is None:
            stats = self.endpoints[endpoint] = EndpointStats()
        stats.add(exchange)
        self.first_us = exchange.start_us if self.first_us is None else min(self.first_us, exchange.start_us)
        self.last_us = max(self.last_us, exchange.start_us + exchange.duration_us)

    @property
    def span_s(self) -> float:
        return 0.0 if self.first_us is None else (self.last_us - self.first_us) / 1e6

    def item_counts(self) -> Counter[str]:
        """Coverage items by kind (`endpoint`, `shape`, `request header`, `response header`, `value`)."""
        kinds: Counter[str] = Counter()
        names = self.coverage.index.names
        for number in self.coverage.items():
            name = names[number]
            kind = next(k for k in ("request header", "response header", "endpoint", "shape", "value")
                        if name.startswith(k + " "))  # fmt: skip
            kinds[kind] += 1
        return kinds

    def to_json(self) -> dict[str, Any]:
        statuses: Counter[str] = Counter()
        for stats in self.endpoints.values():
            statuses.update(stats.statuses)
        return {
            "corpus": str(self.path),
            "header": self.header,
            "exchanges": self.coverage.exchanges,
            "sessions": len(self.coverage.sessions),
            "span_s": round(self.span_s, 3),
            "statuses": dict(sorted(statuses.items())),
            "request_bytes": sum(s.request_bytes for s in self.endpoints.values()),
            "response_bytes": sum(s.response_bytes for s in self.endpoints.values()),
            "coverage": {"items": sum(self.item_counts().values()), "by_kind": dict(self.item_counts())},
            "endpoints": {
                name: stats.to_json()
                for name, stats in sorted(self.endpoints.items(), key=lambda kv: -kv[1].exchanges)
            },
        }


def corpus_statistics(path: Path) -> CorpusStatistics:
    statistics = CorpusStatistics(path, CorpusReader(path).header, CoverageScan())
    statistics.coverage = scan(path, statistics.observe)
    return statistics
