"""`replaydiff import`: any capture file in, one sanitized corpus out.

The input kind is read from the file's first bytes, not its name, because
captures get renamed and tools disagree on extensions: pcap and pcapng by their
magic numbers, mitmproxy flow files by their tnetstring start (`<digits>:`),
HAR by a JSON object. Every kind becomes exchanges sorted by start time, which
then go through the same steps as live recording: group into client sessions
(`recorder.sessions`), sanitize, tag retries, write.
Nothing is written until the input has been read, so a bad file leaves no
half-written corpus.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from replaydiff.corpora import CorpusWriter, Exchange
from replaydiff.recorder.retries import RetryTagger
from replaydiff.recorder.sanitize import Sanitizer
from replaydiff.recorder.sessions import DEFAULT_SESSION_GAP_S, SessionBy, SessionGrouper

Kind = Literal["har", "pcap", "pcapng", "mitmproxy"]

_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_TNETSTRING = re.compile(rb"\d{1,9}:")


class UnreadableInput(ValueError):
    """The input is missing, of no known kind, or broken; the message names the file."""


@dataclass(slots=True)
class Capture:
    """What a reader got out of an input: the exchanges and what it could not use."""

    exchanges: list[Exchange]
    notes: dict[str, Any] = field(default_factory=dict)
    """Reported to the user and stored in the corpus end record (e.g. `unparseable_streams`)."""
    clients: dict[str, str] = field(default_factory=dict)
    """Client address by the reader's session key (its connection), where the input knows it (pcap, flow files)."""


def detect_kind(path: Path) -> Kind:
    try:
        with open(path, "rb") as handle:
            start = handle.read(64)
    except FileNotFoundError:
        raise UnreadableInput(f"{path}: no such file") from None
    except OSError as exc:
        raise UnreadableInput(f"{path}: cannot read ({exc.strerror})") from None
    if start[:4] in _PCAP_MAGICS:
        return "pcap"
    if start[:4] == _PCAPNG_MAGIC:
        return "pcapng"
    if _TNETSTRING.match(start):
        return "mitmproxy"
    if start.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{" or path.suffix.lower() == ".har":
        return "har"
    raise UnreadableInput(f"{path}: not a HAR, pcap, pcapng or mitmproxy flow file (judged by its content)")


def read_capture(path: Path, *, strict: bool = False) -> tuple[Kind, Capture]:
    """The exchanges with the input's own session keys: its connections (HAR: `_session`, `connection`).
    `strict`: a bad HAR entry stops the import instead of being skipped and counted."""
    kind = detect_kind(path)
    if kind in ("pcap", "pcapng"):
        from replaydiff.recorder.pcap import read_pcap

        return kind, read_pcap(path)
    if kind == "har":
        return kind, _read_har(path, strict=strict)
    return kind, _READERS[kind](path)


def import_capture(
    path: Path,
    output: Path,
    *,
    sanitizer: Sanitizer,
    retries: RetryTagger,
    session_by: SessionBy = "client",
    session_gap_s: float = DEFAULT_SESSION_GAP_S,
    strict: bool = False,
) -> tuple[int, Capture]:
    """Returns the number of exchanges written and what the reader noted."""
    sessions = SessionGrouper(sanitizer.key, by=session_by, gap_s=session_gap_s)
    with _collector_paused():
        kind, capture = read_capture(path, strict=strict)
        with CorpusWriter(output, source=f"{kind}:{path.name}", sanitizer=sanitizer.describe()) as writer:
            for exchange in capture.exchanges:
                # Without addresses (HAR), the input's own session (connection, page) stands in for one.
                client = capture.clients.get(exchange.session, exchange.session)
                exchange = sessions.assign(exchange, client_address=client)
                writer.write(retries.tag(sanitizer.exchange(exchange)))
            writer.close(sanitizer=sanitizer.summary(), **capture.notes)
    return len(capture.exchanges), capture


@contextmanager
def _collector_paused() -> Iterator[None]:
    """An import builds millions of objects that live to its end, and no reference cycles: the cyclic garbage
    collector, set off by their allocations, would walk the growing heap again and again to find nothing (a
    fifth of a pcap import's time, measured). Reference counting still frees everything else at once.

    Afterwards, freezing and unfreezing moves every live object into the oldest generation in constant time,
    as if it had survived its collections; otherwise the first collection would walk them all once more.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if not gc.get_freeze_count():  # objects someone else froze must stay frozen
            gc.freeze()
            gc.unfreeze()
        if enabled:
            gc.enable()


def _read_har(path: Path, *, strict: bool = False) -> Capture:
    from replaydiff.recorder.har import HarError, read_har

    try:
        entries = read_har(path, strict=strict)
    except HarError as exc:
        raise UnreadableInput(str(exc)) from None
    if not entries.skipped:
        return Capture(entries.exchanges)
    shown = "; ".join(entries.skipped[:3]) + ("; …" if len(entries.skipped) > 3 else "")
    return Capture(entries.exchanges, {"skipped_entries": f"{len(entries.skipped)} ({shown})"})


def _read_flows(path: Path) -> Capture:
    """mitmproxy's own flow files (`mitmdump -w`): HTTP flows become exchanges, other flows are counted."""
    from mitmproxy import http
    from mitmproxy.exceptions import FlowReadException
    from mitmproxy.io import FlowReader

    from replaydiff.recorder.capture import exchange_from_flow, short_id

    flows: list[http.HTTPFlow] = []
    clients: dict[str, str] = {}
    other = 0
    try:
        with open(path, "rb") as handle:
            for flow in FlowReader(handle).stream():
                if isinstance(flow, http.HTTPFlow) and flow.websocket is None:
                    flows.append(flow)
                    if flow.client_conn.peername:
                        clients[short_id(flow.client_conn.id)] = flow.client_conn.peername[0]
                else:
                    other += 1
    except FlowReadException as exc:
        raise UnreadableInput(f"{path}: not a readable mitmproxy flow file ({exc})") from None
    epoch = min((flow.request.timestamp_start for flow in flows), default=0.0)
    exchanges = sorted((exchange_from_flow(flow, epoch=epoch) for flow in flows), key=lambda e: e.start_us)
    return Capture(exchanges, {"passed_through": {"non_http_flows": other}} if other else {}, clients)


_READERS: dict[str, Callable[[Path], Capture]] = {"mitmproxy": _read_flows}
