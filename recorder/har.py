"""HAR 1.2 import and export (http://www.softwareishard.com/blog/har-12-spec/).

What maps where:
- session: `_session` (ours), else `connection` (the TCP connection id
  browsers write), else `pageref`, else one session for the whole file;
- start_us from `startedDateTime`, relative to the earliest entry;
  duration_us from `time` (milliseconds);
- bodies: HAR holds decoded text, base64 when `encoding` is "base64" (also
  honoured in `postData`, where HAR 1.2 has no such field but tools write it);
  a response whose headers name a Content-Encoding gets `original_encoding`;
- a response with status 0 (how browsers write a failed request) becomes
  `response=None` with an `error` tag;
- exchange ids and tags travel as `_id` and `_tags`, so export then import
  keeps them; upstream calls have no HAR home and are dropped.

Parsing is pure (`exchanges_from_har`, `har_from_exchanges`); the two
functions at the end do the file I/O. Writing an imported corpus (sanitized)
is `recorder.importing`'s job, the same for every input kind.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from replaydiff.corpora import CorpusReader, Exchange, Headers, Request, Response, header_value

_DEFAULT_PORTS = {"http": 80, "https": 443}
_NO_SESSION = "har"


class HarError(ValueError):
    """A HAR file that cannot be imported; the message names the file and, when known, the entry."""


# --- HAR -> exchanges -------------------------------------------------------------------------


_ENTRY_ERRORS = (KeyError, TypeError, ValueError, AttributeError)


def exchanges_from_har(har: Any) -> list[Exchange]:
    """Every entry, or a `HarError` naming the first bad one."""
    return read_entries(har, strict=True).exchanges


@dataclass(slots=True)
class HarEntries:
    exchanges: list[Exchange]
    skipped: list[str] = field(default_factory=list)
    """`entry N: why`, for each entry left out (entries numbered from 1, as a person counts them)."""


def read_entries(har: Any, *, strict: bool = False) -> HarEntries:
    """The exchanges of every usable entry; a bad entry (browsers and tools write odd ones) is skipped and
    named in `skipped`, or with `strict` stops the import. A file none of whose entries is usable is an error."""
    log = har.get("log") if isinstance(har, dict) else None
    entries = log.get("entries") if isinstance(log, dict) else None
    if not isinstance(entries, list):
        raise HarError("not a HAR file: no log.entries list")
    started: list[tuple[int, Any, datetime]] = []
    skipped: list[str] = []
    for number, entry in enumerate(entries, start=1):
        try:
            started.append((number, entry, _parse_time(entry["startedDateTime"])))
        except _ENTRY_ERRORS as exc:
            skipped.append(f"entry {number}: no valid startedDateTime ({_reason(exc)})")
    epoch = min((start for _, _, start in started), default=None)
    exchanges = []
    for number, entry, start in started:
        assert epoch is not None
        try:
            exchanges.append(_exchange(entry, number - 1, start - epoch))
        except _ENTRY_ERRORS as exc:
            skipped.append(f"entry {number}: malformed ({_reason(exc)})")
    skipped.sort(key=lambda note: int(note.split()[1].rstrip(":")))  # entries with a bad time were found first
    if entries and not exchanges:
        raise HarError(f"none of its {len(entries)} entries can be imported; {skipped[0]}")
    if strict and skipped:
        raise HarError(f"{skipped[0]}; nothing imported (without --strict, bad entries are skipped and counted)")
    return HarEntries(exchanges, skipped)


def _exchange(entry: dict[str, Any], index: int, offset: timedelta) -> Exchange:
    response = entry["response"]
    tags = {str(k): str(v) for k, v in entry.get("_tags", {}).items()}
    if int(response["status"]) == 0:
        tags.setdefault("error", str(response.get("_error") or entry.get("_error") or "no response"))
    return Exchange(
        id=str(entry.get("_id") or f"har{index:06d}"),
        session=str(entry.get("_session") or entry.get("connection") or entry.get("pageref") or _NO_SESSION),
        start_us=offset // timedelta(microseconds=1),
        duration_us=max(0, round(float(entry.get("time") or 0) * 1000)),
        request=_request(entry["request"]),
        response=_response(response) if int(response["status"]) else None,
        tags=tags,
    )


def _request(data: dict[str, Any]) -> Request:
    url = urlsplit(data["url"])
    if url.scheme not in _DEFAULT_PORTS or not url.hostname:
        raise ValueError(f"request.url {data['url']!r} is not an absolute http(s) URL")
    return Request(
        method=str(data["method"]).upper(),
        scheme=url.scheme,
        host=url.hostname,
        port=url.port or _DEFAULT_PORTS[url.scheme],
        path=url.path or "/",
        query=url.query,
        http_version=_http_version(data.get("httpVersion")),
        headers=_headers(data.get("headers", [])),
        body=_body(data.get("postData")),
    )


def _response(data: dict[str, Any]) -> Response:
    headers = _headers(data.get("headers", []))
    encoding = (header_value(headers, "content-encoding") or "").strip().lower()
    return Response(
        status=int(data["status"]),
        reason=str(data.get("statusText", "")),
        http_version=_http_version(data.get("httpVersion")),
        headers=headers,
        body=_body(data.get("content")),
        original_encoding=encoding if encoding not in ("", "identity") else None,
    )


def _headers(pairs: Iterable[dict[str, Any]]) -> Headers:
    return [(str(pair["name"]), str(pair["value"])) for pair in pairs]


def _body(content: dict[str, Any] | None) -> bytes:
    """`content` (response) and `postData` (request) share `text` and, by convention, `encoding`."""
    if not content:
        return b""
    text = content.get("text")
    if text is None and content.get("params"):
        text = urlencode([(param["name"], param.get("value", "")) for param in content["params"]])
    if not text:
        return b""
    if content.get("encoding") == "base64":
        return base64.b64decode(text, validate=True)
    return str(text).encode("utf-8")


def _http_version(value: Any) -> str:
    """Browsers write `http/1.1`, `h2` or `h3`; the corpus uses `HTTP/1.1` spelling."""
    text = str(value or "").strip()
    aliases = {"": "HTTP/1.1", "h2": "HTTP/2.0", "h3": "HTTP/3"}
    return aliases.get(text.lower(), text.upper())


def _parse_time(value: Any) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _reason(exc: Exception) -> str:
    return f"missing field {exc}" if isinstance(exc, KeyError) else str(exc) or type(exc).__name__


# --- exchanges -> HAR -------------------------------------------------------------------------


def har_from_exchanges(exchanges: Iterable[Exchange], *, started: datetime) -> dict[str, Any]:
    """`started` is the wall-clock time of `start_us == 0` (the corpus creation time)."""
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "replaydiff", "version": _version()},
            "pages": [],
            "entries": [_entry(exchange, started) for exchange in exchanges],
        }
    }


def _entry(exchange: Exchange, started: datetime) -> dict[str, Any]:
    duration_ms = exchange.duration_us / 1000
    entry: dict[str, Any] = {
        "startedDateTime": (started + timedelta(microseconds=exchange.start_us)).isoformat(),
        "time": duration_ms,
        "request": _har_request(exchange.request),
        "response": _har_response(exchange.response, exchange.tags.get("error")),
        "cache": {},
        "timings": {"send": 0, "wait": duration_ms, "receive": 0},
        "connection": exchange.session,
        "_id": exchange.id,
        "_session": exchange.session,
    }
    if exchange.tags:
        entry["_tags"] = dict(exchange.tags)
    return entry


def _har_request(request: Request) -> dict[str, Any]:
    data: dict[str, Any] = {
        "method": request.method,
        "url": _url(request),
        "httpVersion": request.http_version,
        "cookies": [],
        "headers": _har_headers(request.headers),
        "queryString": [{"name": k, "value": v} for k, v in parse_qsl(request.query, keep_blank_values=True)],
        "headersSize": -1,
        "bodySize": len(request.body),
    }
    if request.body:
        data["postData"] = {"mimeType": header_value(request.headers, "content-type") or "", **_har_text(request.body)}
    return data


def _har_response(response: Response | None, error: str | None) -> dict[str, Any]:
    if response is None:
        return {
            "status": 0,
            "statusText": "",
            "httpVersion": "",
            "cookies": [],
            "headers": [],
            "content": {"size": 0, "mimeType": ""},
            "redirectURL": "",
            "headersSize": -1,
            "bodySize": -1,
            "_error": error or "no response",
        }
    return {
        "status": response.status,
        "statusText": response.reason,
        "httpVersion": response.http_version,
        "cookies": [],
        "headers": _har_headers(response.headers),
        "content": {
            "size": len(response.body),
            "mimeType": header_value(response.headers, "content-type") or "",
            **_har_text(response.body),
        },
        "redirectURL": header_value(response.headers, "location") or "",
        "headersSize": -1,
        "bodySize": -1,
    }


def _har_headers(headers: Headers) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in headers]


def _har_text(body: bytes) -> dict[str, str]:
    try:
        return {"text": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"text": base64.b64encode(body).decode("ascii"), "encoding": "base64"}


def _url(request: Request) -> str:
    host = f"[{request.host}]" if ":" in request.host else request.host
    port = "" if _DEFAULT_PORTS.get(request.scheme) == request.port else f":{request.port}"
    return f"{request.scheme}://{host}{port}{request.target}"


def _version() -> str:
    try:
        return metadata.version("replaydiff")
    except metadata.PackageNotFoundError:
        return "unknown"


# --- files --------------------------------------------------------------------------------------


def export_har(corpus_path: Path, output: Path) -> int:
    """Writes what the corpus holds (already sanitized). Returns the count."""
    reader = CorpusReader(corpus_path)
    exchanges = list(reader)
    har = har_from_exchanges(exchanges, started=_created(reader.header))
    try:
        output.write_text(json.dumps(har, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise HarError(f"{output}: cannot write ({exc.strerror})") from None
    return len(exchanges)


def read_har(path: Path, *, strict: bool = False) -> HarEntries:
    """The whole HAR is parsed before anything is written, so a bad file leaves no half-written corpus."""
    try:
        har = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise HarError(f"{path}: no such file") from None
    except OSError as exc:
        raise HarError(f"{path}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise HarError(f"{path}: not valid JSON ({exc}); is it a HAR file?") from None
    try:
        return read_entries(har, strict=strict)
    except HarError as exc:
        raise HarError(f"{path}: {exc}") from None


def _created(header: dict[str, Any]) -> datetime:
    try:
        return _parse_time(header["created"])
    except (KeyError, ValueError):
        return datetime.fromtimestamp(0, UTC)
