"""Cleartext HTTP/2 with prior knowledge (h2c) through mitmproxy, which speaks HTTP/2 only after TLS ALPN.

Most gRPC between services is h2c: the client opens a plain TCP connection and starts with the HTTP/2 connection
preface (RFC 9113 3.4). mitmproxy 11 reads that preface as an HTTP/1 request `PRI * HTTP/2.0` and kills it (its
issues #6998, #3362; the fix is an open pull request). Its HTTP layer picks HTTP/2 for a connection whose
negotiated ALPN is `h2`, so this addon, on a plain connection that starts with the preface, marks the client
connection as `h2` before the HTTP layer starts; and when such a client's request opens a plain upstream
connection, marks that one `h2` too, so mitmproxy's HTTP/2 client speaks prior knowledge to the server (the
client spoke HTTP/2 to what it took for the server, so the server speaks it as well); a TLS upstream is offered
`h2` by ALPN.

Everything else (TLS, HTTP/1, not HTTP at all) is left to mitmproxy's own `next_layer` decision.
"""

from __future__ import annotations

import logging
import re
import sys

from mitmproxy.proxy import layer, layers, server_hooks

from replaydiff.recorder.http2 import PREFACE

H2 = b"h2"

_PROXY_LOGGER = logging.getLogger("mitmproxy.proxy.server")
_CLIENT_ERRORS = re.compile(r"protocol error|bad http request|invalid http", re.IGNORECASE)


class H2cPriorKnowledge:
    """A mitmproxy addon. `replaydiff record` and `tap` add it after mitmproxy's own NextLayer addon, whose choice
    it corrects. A `mitmdump -s` script runs before NextLayer: the addon then marks the connection and leaves the
    choice to it, and a preface split across two reads (rare: clients write it with their SETTINGS in one go) is
    not waited for."""

    _level = logging.NOTSET

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        context = nextlayer.context
        if context.client.tls or context.client.transport_protocol != "tcp":
            return
        chosen = nextlayer.layer
        if chosen is not None and not _leads_to_http(chosen):
            return  # raw TCP, ignored hosts, DNS…: mitmproxy decided it is not HTTP here
        data = nextlayer.data_client()
        if data.startswith(PREFACE):
            context.client.alpn = H2  # read by the HTTP layer when it starts, right after this hook
        elif chosen is not None and data and PREFACE.startswith(data):
            nextlayer.layer = None  # the preface so far, split across reads: decide when the rest arrives

    def running(self) -> None:
        # mitmproxy logs protocol errors at info level; without its terminal log nothing lowers the level to there
        self._level = _PROXY_LOGGER.level
        _PROXY_LOGGER.setLevel(min(logging.INFO, _PROXY_LOGGER.getEffectiveLevel()))
        _PROXY_LOGGER.addHandler(_PROTOCOL_ERRORS)

    def done(self) -> None:
        _PROXY_LOGGER.removeHandler(_PROTOCOL_ERRORS)
        _PROXY_LOGGER.setLevel(self._level)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        client, server = data.client, data.server
        if client.alpn != H2 or client.tls or server.transport_protocol != "tcp":
            return
        if not server.tls:
            server.alpn = H2
        elif not server.alpn_offers:
            # mitmproxy offers upstream what the client offered in its TLS handshake, and an h2c client had none
            server.alpn_offers = (H2, b"http/1.1")


def _leads_to_http(chosen: layer.Layer | None) -> bool:
    """Whether mitmproxy's choice is HTTP, or a stack ending in it (reverse mode to https: server TLS, then HTTP)."""
    while chosen is not None:
        if isinstance(chosen, layers.HttpLayer):
            return True
        chosen = getattr(chosen, "child_layer", None)
    return False


class _ProtocolErrorLines(logging.Handler):
    """mitmproxy logs a client's protocol errors (garbage after the HTTP/2 preface, a request that is not HTTP) at
    info level, which `replaydiff record` keeps quiet: each becomes one warning line on stderr, and the proxy serves
    on."""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.INFO and _CLIENT_ERRORS.search(message):
            print(f"replaydiff: warning: {message.splitlines()[0]}; connection closed", file=sys.stderr, flush=True)


_PROTOCOL_ERRORS = _ProtocolErrorLines()
