"""The data model every package shares: one definition per concept.

Each type converts to and from plain JSON-able dicts (`to_json` / `from_json`)
so the corpus container stays ignorant of what it stores. Bodies are bytes in
memory and `{"text": ...}` or `{"b64": ...}` on disk, so binary payloads
survive a round trip and text payloads stay readable with `zstd -dc | jq`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

Headers = list[tuple[str, str]]
"""Ordered (name, value) pairs; duplicates are kept because order and repetition are observable."""


def encode_body(body: bytes) -> dict[str, str]:
    try:
        return {"text": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(body).decode("ascii")}


def decode_body(data: dict[str, str] | None) -> bytes:
    if not data:
        return b""
    if "text" in data:
        return data["text"].encode("utf-8")
    return base64.b64decode(data["b64"])


def _headers_from_json(pairs: list[list[str]]) -> Headers:
    return [(str(name), str(value)) for name, value in pairs]


HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)
"""Lower-case names of headers that describe one connection, not the message (RFC 9110 7.6.1, and the
non-standard Proxy-Connection): a replay does not resend them as recorded, a diff does not compare them."""


def header_value(headers: Headers, name: str) -> str | None:
    """First value of a header, matched case-insensitively as HTTP requires."""
    wanted = name.lower()
    size = len(wanted)
    for key, value in headers:
        if len(key) == size and key.lower() == wanted:  # a name of another length is not lower-cased to compare
            return value
    return None


@dataclass(slots=True)
class Request:
    method: str
    scheme: str
    host: str
    port: int
    path: str
    query: str = ""
    http_version: str = "HTTP/1.1"
    headers: Headers = field(default_factory=list)
    body: bytes = b""

    @property
    def target(self) -> str:
        """Path plus raw query, as it appears on the request line."""
        return f"{self.path}?{self.query}" if self.query else self.path

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "scheme": self.scheme,
            "host": self.host,
            "port": self.port,
            "path": self.path,
            "query": self.query,
            "http_version": self.http_version,
            "headers": [list(pair) for pair in self.headers],
            "body": encode_body(self.body),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Request:
        return cls(
            method=data["method"],
            scheme=data["scheme"],
            host=data["host"],
            port=int(data["port"]),
            path=data["path"],
            query=data.get("query", ""),
            http_version=data.get("http_version", "HTTP/1.1"),
            headers=_headers_from_json(data.get("headers", [])),
            body=decode_body(data.get("body")),
        )


@dataclass(slots=True)
class Response:
    status: int
    reason: str = ""
    http_version: str = "HTTP/1.1"
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    original_encoding: str | None = None
    """Content-Encoding the body had on the wire; bodies are stored decoded."""
    body_size: int | None = None
    """Set when the body was above the cap: its whole size; `body` then holds only a bounded prefix."""
    body_digest: str | None = None
    """Set with `body_size`: `sha256:HEX` of the whole body as received, so two cut bodies still compare."""
    trailers: Headers = field(default_factory=list)
    """Fields sent after the body (HTTP/2 trailers; gRPC's `grpc-status` and `grpc-message` live here)."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status,
            "reason": self.reason,
            "http_version": self.http_version,
            "headers": [list(pair) for pair in self.headers],
            "body": encode_body(self.body),
        }
        if self.original_encoding:
            data["original_encoding"] = self.original_encoding
        if self.body_digest is not None:
            data["body_size"] = self.body_size
            data["body_digest"] = self.body_digest
        if self.trailers:
            data["trailers"] = [list(pair) for pair in self.trailers]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Response:
        return cls(
            status=int(data["status"]),
            reason=data.get("reason", ""),
            http_version=data.get("http_version", "HTTP/1.1"),
            headers=_headers_from_json(data.get("headers", [])),
            body=decode_body(data.get("body")),
            original_encoding=data.get("original_encoding"),
            body_size=data.get("body_size"),
            body_digest=data.get("body_digest"),
            trailers=_headers_from_json(data.get("trailers", [])),
        )


@dataclass(slots=True)
class UpstreamCall:
    """A call the service under test made to one of its dependencies."""

    dependency: str
    method: str
    path: str
    status: int | None
    error: str | None = None
    start_us: int = 0
    duration_us: int = 0
    trace_id: str = ""
    """From the `traceparent` the service propagated: names the replayed request that caused the call."""
    fault: str | None = None
    """The fault the tap injected into this call, if any."""
    approximate: bool = False
    """Attributed by time window because the service did not propagate `traceparent`."""
    query: str = ""
    request: Request | None = None
    """The whole request as the tap saw it (sanitized): what a mock matches later calls against."""
    answer: Response | None = None
    """The whole answer (sanitized): what a mock answers with."""
    mock: str | None = None
    """How a mock answered: `exact`, `exchange` (another call of the exchange), `corpus` (another exchange's), or
    `miss` (none in the recording); None when the call was forwarded."""
    mock_recorded: int | None = None
    """With `exact` or `exchange`: which recorded call of the exchange to that dependency answered (0-based)."""
    mock_changes: list[str] = field(default_factory=list)
    """With `exchange` or `corpus`: how the request differed from the recorded one (`body $.qty: 1 → 2`)."""
    mock_by_time: bool = False
    """With `exact` or `exchange`: the recorded call that answered carried no trace id and was attributed to its
    exchange by time (`corpora.windows`), so the match is only as sure as that attribution."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "dependency": self.dependency,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "error": self.error,
            "start_us": self.start_us,
            "duration_us": self.duration_us,
            "trace_id": self.trace_id,
        }
        if self.fault:
            data["fault"] = self.fault
        if self.approximate:
            data["approximate"] = True
        if self.query:
            data["query"] = self.query
        if self.request is not None:
            data["request"] = self.request.to_json()
        if self.answer is not None:
            data["answer"] = self.answer.to_json()
        if self.mock is not None:
            data["mock"] = self.mock
            if self.mock_recorded is not None:
                data["mock_recorded"] = self.mock_recorded
            if self.mock_changes:
                data["mock_changes"] = list(self.mock_changes)
            if self.mock_by_time:
                data["mock_by_time"] = True
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UpstreamCall:
        fields = dict(data)
        request, answer = fields.pop("request", None), fields.pop("answer", None)
        return cls(
            **fields,
            request=Request.from_json(request) if request else None,
            answer=Response.from_json(answer) if answer else None,
        )


@dataclass(slots=True)
class Exchange:
    """One recorded request and what production answered."""

    id: str
    session: str
    start_us: int
    """Offset from the corpus start, so a corpus replays the same whenever it was recorded."""
    request: Request
    response: Response | None
    duration_us: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    upstream: list[UpstreamCall] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "session": self.session,
            "start_us": self.start_us,
            "duration_us": self.duration_us,
            "request": self.request.to_json(),
            "response": self.response.to_json() if self.response else None,
        }
        if self.tags:
            data["tags"] = dict(self.tags)
        if self.upstream:
            data["upstream"] = [call.to_json() for call in self.upstream]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Exchange:
        response = data.get("response")
        return cls(
            id=str(data["id"]),
            session=str(data["session"]),
            start_us=int(data["start_us"]),
            duration_us=int(data.get("duration_us", 0)),
            request=Request.from_json(data["request"]),
            response=Response.from_json(response) if response else None,
            tags=dict(data.get("tags", {})),
            upstream=[UpstreamCall.from_json(call) for call in data.get("upstream", [])],
        )


ErrorKind = Literal["timeout", "reset", "refused", "protocol", "other"]


@dataclass(slots=True)
class Attempt:
    """One try at one target: when it left, when bytes came back, and how it ended."""

    sent_us: int
    """Offset from the replay start."""
    ttfb_us: int | None
    duration_us: int
    status: int | None
    error: ErrorKind | None = None
    error_detail: str | None = None
    span_id: str = ""
    """The W3C span id this attempt carried in its `traceparent`."""

    def to_json(self) -> dict[str, Any]:
        return {
            "sent_us": self.sent_us,
            "ttfb_us": self.ttfb_us,
            "duration_us": self.duration_us,
            "status": self.status,
            "error": self.error,
            "error_detail": self.error_detail,
            "span_id": self.span_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        return cls(**data)


TargetName = str
"""`baseline`, `baseline2` or `candidate`."""


@dataclass(slots=True)
class ReplayRecord:
    """What one target did with one replayed exchange."""

    exchange_id: str
    target: TargetName
    endpoint: str
    """Endpoint template (`GET /items/{id}`), carried so results diff without the corpus."""
    attempts: list[Attempt]
    response: Response | None
    upstream: list[UpstreamCall] = field(default_factory=list)
    schedule_lag_us: int = 0
    """How late the request left compared with its plan: tells whether the replayer kept up."""
    trace_id: str = ""
    """The W3C trace id sent to this target, to find the request in the target's own logs and traces."""
    carried: int = 0
    """Values of the request replaced by what this target answered earlier in the session (correlation)."""
    not_carried: list[str] = field(default_factory=list)
    """Where the request sent a value learned from an earlier answer that this target never answered
    (`header If-Match`, `path`): the session was broken before this request, whatever it answered."""
    recorded_status: int | None = None
    """What production answered when the exchange was recorded: the diff judges how faithfully the
    baselines reproduced the recording (`diff.fidelity`) without the corpus."""
    recorded_grpc_status: int | None = None
    """For a gRPC call, the `grpc-status` production answered: its outcome, where `recorded_status` is 200."""

    @property
    def final(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def to_json(self) -> dict[str, Any]:
        return {
            "exchange_id": self.exchange_id,
            "target": self.target,
            "endpoint": self.endpoint,
            "attempts": [a.to_json() for a in self.attempts],
            "response": self.response.to_json() if self.response else None,
            "upstream": [call.to_json() for call in self.upstream],
            "schedule_lag_us": self.schedule_lag_us,
            "trace_id": self.trace_id,
            **({"carried": self.carried} if self.carried else {}),
            **({"not_carried": self.not_carried} if self.not_carried else {}),
            **({"recorded_status": self.recorded_status} if self.recorded_status is not None else {}),
            **({"recorded_grpc_status": self.recorded_grpc_status} if self.recorded_grpc_status is not None else {}),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplayRecord:
        response = data.get("response")
        return cls(
            exchange_id=str(data["exchange_id"]),
            target=data["target"],
            endpoint=data["endpoint"],
            attempts=[Attempt.from_json(a) for a in data.get("attempts", [])],
            response=Response.from_json(response) if response else None,
            upstream=[UpstreamCall.from_json(c) for c in data.get("upstream", [])],
            schedule_lag_us=int(data.get("schedule_lag_us", 0)),
            trace_id=data.get("trace_id", ""),
            carried=int(data.get("carried", 0)),
            not_carried=[str(where) for where in data.get("not_carried", [])],
            recorded_status=data.get("recorded_status"),
            recorded_grpc_status=data.get("recorded_grpc_status"),
        )


DivergenceKind = Literal["status", "header", "body", "latency", "retry", "upstream", "error"]
DIVERGENCE_KINDS: tuple[DivergenceKind, ...] = get_args(DivergenceKind)


@dataclass(slots=True)
class Divergence:
    """A difference between baseline and candidate that survived noise filtering."""

    exchange_id: str
    endpoint: str
    kind: DivergenceKind
    location: str
    """JSON path (`$.items[*].price`), header name, or empty for the whole status/body."""
    baseline: Any
    candidate: Any

    @property
    def fingerprint(self) -> str:
        """Stable across runs, so a team can track or accept a divergence."""
        return f"{self.endpoint}|{self.kind}|{self.location}"

    def to_json(self) -> dict[str, Any]:
        return {
            "exchange_id": self.exchange_id,
            "endpoint": self.endpoint,
            "kind": self.kind,
            "location": self.location,
            "baseline": self.baseline,
            "candidate": self.candidate,
            "fingerprint": self.fingerprint,
        }
