"""One walker that visits every place in a request or response where a value can hide.

It knows HTTP's structure and nothing about secrets: it takes headers apart
(cookies, the credentials after an auth scheme word, the query of URL-valued
headers), query strings, and bodies (JSON at any depth, form-encoded,
multipart parts, anything else as free text), and asks a `Judge` about each
value. The judge (the sanitizer) holds the rules; the walker puts the answers
back so that everything the judge left alone stays byte-identical: unchanged
query parameters keep their encoding, unchanged multipart parts their bytes, a
JSON body with nothing to change is not re-serialized.

Compressed bodies are decoded first. Response bodies are stored decoded
already (`Response.original_encoding`); a request body is stored as sent, so a
replay sends the same bytes, and is therefore re-encoded with its own
Content-Encoding when the judge changed something. A compressed body that does
not decode cannot be inspected and is replaced by an empty one (`DROPPED_BODY`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from enum import Enum
from functools import partial
from typing import Any, Protocol, TypeVar
from urllib.parse import quote_plus, unquote_plus

from mitmproxy.net import encoding as codecs

from replaydiff.corpora import Headers, Request, Response, header_value
from replaydiff.recorder.policy import JSON_ROOT, NamedPlace


_T = TypeVar("_T")


class Verdict(Enum):
    NO_RULE = "no rule"
    """No named rule applies: the walker goes on (value patterns for a string, children for a container)."""
    DROP = "drop"


NO_RULE = Verdict.NO_RULE
DROP = Verdict.DROP
DROPPED_BODY = "undecodable-body"
"""The judge's fired-count name for a compressed body that could not be decoded and was dropped."""


class Judge(Protocol):
    def named(self, place: NamedPlace, name: str, value: Any) -> Any:
        """The replacement for a value found under a name, `DROP`, or `NO_RULE`."""

    def scan(self, text: str) -> str:
        """Free text with every value pattern replaced."""

    def json_step(self, path: str, key: str | int) -> str:
        """How the judge names a JSON member or array item below `path`."""

    def may_hide_secrets(self, json_text: str) -> bool:
        """False when a JSON document certainly holds nothing any rule matches, so it need not be walked."""

    def scans_number(self, text: str) -> bool:
        """Whether a JSON number written as `text` could hold a secret (a card number), so is worth a scan."""

    def dropped_body(self) -> None:
        """Counts a body that could not be inspected."""

    def unread_grpc_message(self) -> None:
        """Counts a gRPC message that could not be read (compressed, or not protobuf), kept as it was sent."""

    def remembered(self, key: tuple[str, ...], answer: Callable[[], _T]) -> _T:
        """`answer()`, or what it gave before for this key: asked only for answers that depend on the key alone."""


_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization"})
_COOKIE_HEADERS = frozenset({"cookie"})
_SET_COOKIE_HEADERS = frozenset({"set-cookie", "set-cookie2"})
_URL_HEADERS = frozenset({"referer", "location", "content-location"})
_OPAQUE_TYPES = re.compile(r"(image|audio|video|font)/", re.IGNORECASE)
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_PART_NAME = re.compile(rb'\bname="([^"]*)"', re.IGNORECASE)


def walk_request(request: Request, judge: Judge) -> Request:
    """The request itself when the judge changed nothing, like every walker here: no copy to make."""
    headers = walk_headers(request.headers, judge)
    query = walk_pairs(request.query, "query", judge)
    body = _encoded_body(request.body, request.headers, judge)
    if headers is request.headers and query == request.query and body is request.body:
        return request
    return replace(request, headers=headers, query=query, body=body)


def walk_response(response: Response, judge: Judge) -> Response:
    headers = walk_headers(response.headers, judge)
    trailers = walk_headers(response.trailers, judge)  # HTTP/2 trailers: gRPC's `grpc-message` may quote input
    if response.original_encoding or not _content_encoding(response.headers):
        body = walk_body(response.body, response.headers, judge)
    else:
        body = _encoded_body(response.body, response.headers, judge)
    if headers is response.headers and body is response.body and trailers is response.trailers:
        return response
    return replace(response, headers=headers, body=body, trailers=trailers)


# --- headers ------------------------------------------------------------------------------------


def walk_headers(headers: Headers, judge: Judge) -> Headers:
    """The list itself when the judge changed no header. Each line's answer is remembered by the judge: the
    same lines come back in every exchange."""
    result: Headers = []
    for name, value in headers:
        new = judge.remembered(("header", name, value), partial(_header, name, value, judge)) if value else value
        if new is not DROP:
            result.append((name, new))
    return headers if result == headers else result


def _header(name: str, value: str, judge: Judge) -> str | Verdict:
    lname = name.lower()
    if lname in _COOKIE_HEADERS:
        return _cookies(value, judge)
    if lname in _SET_COOKIE_HEADERS:
        pair, semicolon, attributes = value.partition(";")
        new_pair = _cookie_pair(pair, judge)
        return DROP if new_pair is DROP else f"{new_pair}{semicolon}{attributes}"
    if lname in _CREDENTIAL_HEADERS:
        scheme, space, credentials = value.strip().partition(" ")
        if space and credentials.strip():
            new = _slot("header", lname, credentials, judge)
            return DROP if new is DROP else f"{scheme} {new}"
    verdict = judge.named("header", lname, value)
    if verdict is not NO_RULE:
        return verdict
    return _url(value, judge) if lname in _URL_HEADERS else judge.scan(value)


def _cookies(value: str, judge: Judge) -> str | Verdict:
    kept = [new for pair in value.split(";") if (new := _cookie_pair(pair, judge)) is not DROP]
    return ";".join(kept).lstrip() if kept else DROP


def _cookie_pair(pair: str, judge: Judge) -> str | Verdict:
    """`name=value` keeps the name and its spacing; a cookie without `=` is all value, under the name ``."""
    name, equals, value = pair.partition("=")
    if not equals:
        name, value = "", pair
    if not value.strip():
        return pair
    new = _slot("cookie", name.strip().lower(), value, judge)
    if new is DROP:
        return DROP
    return f"{name}={new}" if equals else pair[: len(pair) - len(pair.lstrip())] + new


def _url(url: str, judge: Judge) -> str:
    base, question, rest = url.partition("?")
    if not question:
        return judge.scan(url)
    query, hash_mark, fragment = rest.partition("#")
    return f"{judge.scan(base)}?{walk_pairs(query, 'query', judge)}{hash_mark}{judge.scan(fragment)}"


def _slot(place: NamedPlace, name: str, value: str, judge: Judge) -> str | Verdict:
    verdict = judge.named(place, name, value)
    return judge.scan(value) if verdict is NO_RULE else verdict


# --- query strings and form bodies --------------------------------------------------------------


def walk_pairs(text: str, place: NamedPlace, judge: Judge) -> str:
    """`a=1&b=2` pairs; only the values the judge changed are re-encoded, dropped pairs disappear."""
    if not text:
        return text
    kept = []
    for part in text.split("&"):
        new = judge.remembered((place, part), partial(_pair, part, place, judge))
        if new is not DROP:
            kept.append(new)
    return "&".join(kept)


def _pair(part: str, place: NamedPlace, judge: Judge) -> str | Verdict:
    name, equals, raw = part.partition("=")
    if not equals:  # a bare token (`?4111%201111…`): all value, scanned like one
        value = unquote_plus(part)
        scanned = judge.scan(value) if value else value
        return part if scanned == value else quote_plus(scanned)
    value = unquote_plus(raw)
    new = _slot(place, unquote_plus(name).lower(), value, judge) if value else value
    if new is DROP:
        return DROP
    return part if new == value else f"{name}{equals}{quote_plus(new)}"


# --- bodies -------------------------------------------------------------------------------------


def _content_encoding(headers: Headers) -> str:
    value = (header_value(headers, "content-encoding") or "").strip().lower()
    return "" if value == "identity" else value


def _encoded_body(body: bytes, headers: Headers, judge: Judge) -> bytes:
    """A body as it travels (maybe compressed): decoded, walked, and re-encoded only if something changed."""
    if not body:
        return body
    coding = _content_encoding(headers)
    if not coding:
        return walk_body(body, headers, judge)
    try:
        plain = codecs.decode(body, coding)
    except ValueError:
        judge.dropped_body()
        return b""
    assert isinstance(plain, bytes)
    walked = walk_body(plain, headers, judge)
    if walked == plain:
        return body
    encoded = codecs.encode(walked, coding)
    assert isinstance(encoded, bytes)
    return encoded


def walk_body(body: bytes, headers: Headers, judge: Judge) -> bytes:
    if not body:
        return body
    content_type = header_value(headers, "content-type") or ""
    return _BODY_WALKERS[_body_kind(body, content_type.lower())](body, content_type, judge)


def _body_kind(body: bytes, content_type: str) -> str:
    if _OPAQUE_TYPES.match(content_type):
        return "opaque"
    if "json" in content_type or body.lstrip()[:1] in (b"{", b"["):
        return "json"
    if content_type.startswith("application/x-www-form-urlencoded"):
        return "form"
    if content_type.startswith("multipart/") and _BOUNDARY.search(content_type):
        return "multipart"
    return "text"


def _text_body(body: bytes, _content_type: str, judge: Judge) -> bytes:
    """UTF-8 with surrogate escapes: the patterns see the characters (digits of any script included), and
    every byte that is not UTF-8 maps to one character and back, so bytes around a replacement stay identical."""
    text = body.decode("utf-8", "surrogateescape")
    scanned = judge.scan(text)
    return body if scanned == text else scanned.encode("utf-8", "surrogateescape")


def _opaque_body(body: bytes, _content_type: str, _judge: Judge) -> bytes:
    return body


def _form_body(body: bytes, _content_type: str, judge: Judge) -> bytes:
    text = body.decode("latin-1")
    walked = walk_pairs(text, "form", judge)
    return body if walked == text else walked.encode("latin-1", "replace")


def _json_body(body: bytes, content_type: str, judge: Judge) -> bytes:
    try:
        if not judge.may_hide_secrets(body.decode("utf-8")):
            return body
        document = json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        return _text_body(body, content_type, judge)
    walked = walk_json(document, JSON_ROOT, judge)
    if walked is document:
        return body
    if walked is DROP:
        return b""
    spaced = b'": ' in body or b", " in body
    return json.dumps(walked, ensure_ascii=False, separators=(", ", ": ") if spaced else (",", ":")).encode("utf-8")


def walk_json(node: Any, path: str, judge: Judge) -> Any:
    """The node itself when nothing below it changed (callers test with `is`), else a new node or `DROP`."""
    verdict = judge.named("json", path, node)
    if verdict is not NO_RULE:
        return verdict
    if isinstance(node, str):
        scanned = judge.scan(node)
        return node if scanned == node else scanned
    if isinstance(node, int | float) and not isinstance(node, bool):
        text = repr(node)
        if not judge.scans_number(text):
            return node
        scanned = judge.scan(text)
        return node if scanned == text else int(scanned) if scanned.isdigit() else scanned
    if isinstance(node, dict):
        children = {key: walk_json(value, judge.json_step(path, key), judge) for key, value in node.items()}
        if all(children[key] is node[key] for key in node):
            return node
        return {key: value for key, value in children.items() if value is not DROP}
    if isinstance(node, list):
        items = [walk_json(value, judge.json_step(path, index), judge) for index, value in enumerate(node)]
        if all(new is old for new, old in zip(items, node, strict=True)):
            return node
        return [item for item in items if item is not DROP]
    return node


def _multipart_body(body: bytes, content_type: str, judge: Judge) -> bytes:
    """Parts are split on the boundary and rebuilt around it, so untouched parts keep every byte."""
    boundary = _BOUNDARY.search(content_type)
    assert boundary is not None
    delimiter = b"--" + boundary.group(1).encode("latin-1")
    segments = body.split(delimiter)
    if len(segments) < 3:
        return _text_body(body, content_type, judge)
    walked = [segments[0], *(_part(segment, judge) for segment in segments[1:-1]), segments[-1]]
    return delimiter.join(segment for segment in walked if segment is not None)


def _part(segment: bytes, judge: Judge) -> bytes | None:
    head, blank, content = segment.partition(b"\r\n\r\n")
    if not blank:
        return _text_body(segment, "", judge)
    ending = b"\r\n" if content.endswith(b"\r\n") else b""
    content = content[: len(content) - len(ending)]
    name = _PART_NAME.search(head)
    part_headers = _part_headers(head)
    part_name = name.group(1).decode("latin-1").lower() if name else None
    verdict = judge.named("form", part_name, content.decode("latin-1")) if part_name is not None else NO_RULE
    if verdict is DROP:
        return None
    if verdict is NO_RULE:
        new_content = walk_body(content, part_headers, judge)
    else:
        new_content = str(verdict).encode("latin-1", "replace")
    return head + blank + new_content + ending


def _part_headers(head: bytes) -> Headers:
    lines = head.decode("latin-1").split("\r\n")
    return [(name.strip(), value.strip()) for name, colon, value in (line.partition(":") for line in lines) if colon]


_BODY_WALKERS: dict[str, Callable[[bytes, str, Judge], bytes]] = {
    "opaque": _opaque_body,
    "json": _json_body,
    "form": _form_body,
    "multipart": _multipart_body,
    "text": _text_body,
}
