"""The tap's two additions for mocks: logging each call whole (sanitized) and answering calls from a recording.

Kept apart from `recorder.tap`, which only calls `CallCapture.whole` when it
writes a call and `MockAnswers.respond` once the seeded fault (if any) is
decided: a faulted call keeps its fault, a delayed one is delayed and then
answered from the recording, exactly as a forwarded one would be.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from replaydiff.corpora import UpstreamCall
from replaydiff.recorder.capture import DEFAULT_MAX_BODY, exchange_from_flow, truncated
from replaydiff.recorder.mock import MISS_STATUS, CallRequest, MockError, MockRecording, dependency_name, load_ignored
from replaydiff.recorder.policy import PolicyError
from replaydiff.recorder.sanitize import Sanitizer

ON_MISS_CHOICES = ("502", "forward")


class CallCapture:
    """Each call's request and answer in the log, through the same sanitizer `record` uses."""

    def __init__(self) -> None:
        self.sanitizer: Sanitizer | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option("tap_policy", str, "", "Sanitization policy (TOML) for the logged requests and answers.")
        loader.add_option("tap_default_sanitize", bool, True, "Apply the built-in safe sanitizing defaults.")
        loader.add_option("tap_pseudonym_key_file", str, "", "HMAC key file for pseudonymize rules.")
        loader.add_option("tap_whole_calls", bool, True, "Log each call's request and answer, not only its outcome.")

    def configure(self, updated: set[str]) -> None:
        if updated & {"tap_policy", "tap_default_sanitize", "tap_pseudonym_key_file"} or self.sanitizer is None:
            try:
                self.sanitizer = Sanitizer.configured(
                    policy_file=Path(ctx.options.tap_policy) if ctx.options.tap_policy else None,
                    defaults=ctx.options.tap_default_sanitize,
                    key_file=Path(ctx.options.tap_pseudonym_key_file) if ctx.options.tap_pseudonym_key_file else None,
                )
            except (PolicyError, OSError, ValueError) as exc:
                raise exceptions.OptionsError(str(exc)) from None

    def whole(self, call: UpstreamCall, flow: http.HTTPFlow) -> UpstreamCall:
        if self.sanitizer is None or not ctx.options.tap_whole_calls:
            return call
        exchange = truncated(self.sanitizer.exchange(exchange_from_flow(flow, epoch=0)), DEFAULT_MAX_BODY)
        return replace(
            call, path=exchange.request.path, query=exchange.request.query, request=exchange.request,
            answer=exchange.response,
        )  # fmt: skip


@dataclass(slots=True)
class MockResult:
    how: str
    recorded: int | None
    changes: list[str] = field(default_factory=list)
    by_time: bool = False

    def logged(self, call: UpstreamCall) -> UpstreamCall:
        path, _, query = call.path.partition("?")
        return replace(
            call, path=path, query=query, mock=self.how, mock_recorded=self.recorded, mock_changes=self.changes,
            mock_by_time=self.by_time,
        )  # fmt: skip


class MockAnswers:
    OPTIONS = frozenset({"tap_mock", "tap_on_miss", "tap_mock_rules", "tap_mock_corpus"})

    def __init__(self, recording: MockRecording, on_miss: str) -> None:
        self.recording = recording
        self.on_miss = on_miss
        self.counts: Counter[str] = Counter()
        self.by_time = 0
        """Matches within an exchange made with a recorded call attributed to it by time."""
        self._unknown_warned: set[str] = set()

    @staticmethod
    def load_options(loader: Loader) -> None:
        loader.add_option("tap_mock", str, "", "Answer from this recorded upstream log instead of forwarding.")
        loader.add_option("tap_on_miss", str, "502", "With tap_mock, a call nothing recorded answers: 502 or forward.")
        loader.add_option("tap_mock_rules", str, "", "A rules file whose ignored JSON paths mock matching ignores.")
        loader.add_option(
            "tap_mock_corpus", str, "",
            "The corpus recorded with tap_mock: its recorded calls without a trace id are attributed to its "
            "exchanges by time (one exchange in flight), and matched within them.",
        )  # fmt: skip

    @classmethod
    def configured(cls) -> MockAnswers | None:
        if not ctx.options.tap_mock:
            return None
        if ctx.options.tap_on_miss not in ON_MISS_CHOICES:
            raise exceptions.OptionsError(f"tap_on_miss must be one of {', '.join(ON_MISS_CHOICES)}")
        try:
            ignored = load_ignored(Path(ctx.options.tap_mock_rules)) if ctx.options.tap_mock_rules else ()
            corpus = Path(ctx.options.tap_mock_corpus) if ctx.options.tap_mock_corpus else None
            recording = MockRecording.load(Path(ctx.options.tap_mock), ignored=ignored, corpus=corpus)
        except MockError as exc:
            raise exceptions.OptionsError(str(exc)) from None
        return cls(recording, ctx.options.tap_on_miss)

    def respond(self, flow: http.HTTPFlow, dependency: str, trace_id: str, ordinal: int) -> MockResult:
        """Sets the flow's answer from the recording; a miss is answered 502 or left to go to the real dependency."""
        path, _, query = flow.request.path.partition("?")
        request = CallRequest(
            dependency_name(dependency), flow.request.method, path, query, flow.request.get_content(strict=False) or b""
        )
        match = self.recording.answer(trace_id, ordinal, request)
        self.counts[match.how] += 1
        self.by_time += match.by_time
        if match.answer is not None:
            answer = match.answer
            flow.response = http.Response.make(answer.status, answer.body, [(k.encode(), v.encode()) for k, v in answer.headers])
            if answer.trailers:  # a gRPC call's outcome (grpc-status) travels in them
                flow.response.trailers = http.Headers([(k.encode(), v.encode()) for k, v in answer.trailers])
            return MockResult(match.how, match.recorded, match.changes, match.by_time)
        if request.dependency not in self.recording.dependencies and request.dependency not in self._unknown_warned:
            self._unknown_warned.add(request.dependency)
            # on stderr as the tap's other messages (mitmproxy's own log is off): a user sees it where it happens
            print(
                f"replaydiff: warning: mock: the recording has no call to dependency {request.dependency!r}; "
                f"its calls are misses ({'forwarded' if self.on_miss == 'forward' else 'answered 502'})",
                file=sys.stderr, flush=True,
            )  # fmt: skip
        if self.on_miss == "forward":
            return MockResult("miss", None)
        flow.response = http.Response.make(
            MISS_STATUS,
            json.dumps({"error": f"replaydiff mock: no recorded answer for {request.method} {flow.request.path}"}),
            {"Content-Type": "application/json"},
        )
        return MockResult("miss", None)

    def summary(self) -> str:
        kinds = [f"{how} {self.counts[how]}" for how in ("exact", "exchange", "corpus", "miss") if self.counts[how]]
        by_time = [f"{self.by_time} of them from calls attributed by time"] if self.by_time else []
        return ", ".join(kinds + by_time)
