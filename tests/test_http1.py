"""The replayer's own HTTP/1.1 client against real local servers: the HTTP corners a replay meets."""

from __future__ import annotations

import asyncio
import gc
import gzip
from pathlib import Path

from aiohttp import web

from replaydiff.corpora import Attempt, Request, Response
from replaydiff.corpora.model import header_value
from replaydiff.replayer.client import TargetClient, Timeouts, TLSOptions
from replaydiff.replayer.targets import Target
from tests.servers import raw_server, self_signed_certificate, serve, tls_server_context

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _request(method: str = "GET", path: str = "/x", headers: list[tuple[str, str]] | None = None,
             body: bytes = b"") -> Request:
    path, _, query = path.partition("?")
    return Request(method, "http", "svc", 80, path, query=query,
                   headers=[("Host", "svc")] if headers is None else headers, body=body)


def _send_all(url: str, *requests: Request, timeouts: Timeouts = Timeouts(), tls: TLSOptions = TLSOptions(),
              target_headers: list[tuple[str, str]] | None = None) -> list[tuple[Attempt, Response | None]]:
    """Sends the requests one after another on one client, as one session would."""

    async def run() -> list[tuple[Attempt, Response | None]]:
        client = TargetClient(Target.parse("baseline", url, target_headers), timeouts=timeouts, tls=tls)
        try:
            return [await client.send(request, epoch_ns=0) for request in requests]
        finally:
            await client.aclose()

    return asyncio.run(run())


def _echo_app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {"X-Method": request.method, "X-Host": request.headers.get("Host", ""),
                   "X-Length": request.headers.get("Content-Length", "none"), "X-Path": request.path_qs,
                   "X-Sandbox": request.headers.get("X-Sandbox", "")}
        return web.Response(body=body or b"empty", headers=headers)

    async def zipped(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Encoding": "gzip"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(gzip.compress(b'{"zipped": true}'))
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/zipped", zipped)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def test_requests_go_out_as_recorded_and_keep_alive() -> None:
    with serve(_echo_app()) as url:
        answers = _send_all(
            url,
            _request("GET", "/a?x=1&y=%2F"),
            _request("HEAD", "/a"),
            _request("POST", "/b", body=b'{"n": 1}'),
            _request("POST", "/c"),
            _request("GET", "/d", headers=[]),
            _request("GET", "/zipped"),
            target_headers=[("X-Sandbox", "abc")],
        )
    (get, head, post, empty_post, hostless, zipped) = [response for _, response in answers]
    assert all(attempt.error is None for attempt, _ in answers)
    assert get and header_value(get.headers, "X-Path") == "/a?x=1&y=%2F" and header_value(get.headers, "X-Host") == "svc"
    assert header_value(get.headers, "X-Sandbox") == "abc"
    assert head and head.status == 200 and head.body == b""  # headers only, and the next request still works
    assert post and post.body == b'{"n": 1}' and header_value(post.headers, "X-Length") == "8"
    assert empty_post and header_value(empty_post.headers, "X-Length") == "0"
    assert hostless and header_value(hostless.headers, "X-Host") == url.removeprefix("http://")
    assert zipped and zipped.body == b'{"zipped": true}' and zipped.original_encoding == "gzip"


def test_answers_ended_by_close_and_interim_answers() -> None:
    with raw_server(b"HTTP/1.0 200 OK\r\nX-Old: 1\r\n\r\nuntil the end") as eof_ended, \
            raw_server(b"HTTP/1.1 100 Continue\r\n\r\n" + OK) as interim:
        [(_, until_close)] = _send_all(eof_ended, _request())
        [(_, after_continue)] = _send_all(interim, _request("POST", body=b"x"))
    assert until_close and until_close.body == b"until the end" and until_close.http_version == "HTTP/1.0"
    assert after_continue and after_continue.status == 200 and after_continue.body == b"ok"


def test_a_body_that_does_not_decode_as_it_says_is_kept_as_received() -> None:
    with raw_server(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 8\r\n\r\nnot gzip") as lying:
        [(attempt, response)] = _send_all(lying, _request())
    assert response and response.body == b"not gzip" and response.original_encoding is None
    assert attempt.error is None and "kept as received" in (attempt.error_detail or "")


def test_a_kept_alive_connection_the_server_closed_is_retried_only_when_idempotent() -> None:
    with raw_server(OK) as closes_after_one:  # keep-alive by HTTP/1.1 default, yet closed after the answer
        get_answers = _send_all(closes_after_one, _request(), _request())
        post_answers = _send_all(closes_after_one, _request(), _request("POST", body=b"x"))
    assert [a.status for a, _ in get_answers] == [200, 200]
    assert post_answers[1][0].error == "reset"  # a POST may have been acted on: not sent twice


def test_silence_is_a_timeout_and_a_line_break_in_a_header_is_not_sent() -> None:
    with raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", b"") as stalls:  # then silent
        [(stalled, _)] = _send_all(stalls, _request(), timeouts=Timeouts(read_s=0.3))
        [(injected, response)] = _send_all(stalls, _request(headers=[("X-Evil", "a\r\nX-Injected: 1")]))
    assert stalled.error == "timeout" and stalled.duration_us >= 250_000  # waited for the read timeout
    assert injected.error == "other" and response is None and "line break" in (injected.error_detail or "")


def test_https_targets_verify_against_the_given_ca_or_not_at_all(tmp_path: Path) -> None:
    cert_file, key_file = self_signed_certificate(tmp_path)
    with serve(_echo_app(), ssl_context=tls_server_context(cert_file, key_file)) as url:
        [(untrusted, _)] = _send_all(url, _request())
        [(_, with_ca)] = _send_all(url, _request(), tls=TLSOptions(ca_file=str(cert_file)))
        [(_, insecure)] = _send_all(url, _request(), tls=TLSOptions(insecure=True))
    assert untrusted.error == "refused" and "CERTIFICATE_VERIFY_FAILED" in (untrusted.error_detail or "")
    assert with_ca and with_ca.status == 200 and header_value(with_ca.headers, "X-Method") == "GET"
    assert insecure and insecure.status == 200


def test_an_answer_nobody_awaits_any_more_is_not_reported_as_lost() -> None:
    """Ctrl-C can cancel a replay while it waits for one target's answer and not yet the others'; closing
    the pools then fails those answers, which asyncio must not print as exceptions never retrieved."""
    reported: list[str] = []

    async def run(url: str) -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: reported.append(context["message"]))
        client = TargetClient(Target.parse("baseline", url), timeouts=Timeouts())
        await client.send(_request(), epoch_ns=0)  # answered: the connection is kept alive for the next
        abandoned = client.begin(_request())  # sent, never awaited
        await asyncio.sleep(0.05)
        await client.aclose()
        await asyncio.sleep(0.05)
        del abandoned
        gc.collect()

    with raw_server(OK, b"") as answers_once_then_silent:
        asyncio.run(run(answers_once_then_silent))
    assert reported == []
