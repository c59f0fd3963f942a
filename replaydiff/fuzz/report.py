"""What a user reads after a session: each minimal diverging request, both answers side by side, curl lines.

Everything taken from traffic is printed as plain `Text`, never as rich
markup: a recorded `Bearer [masked]` must not be read as a style tag.
"""

from __future__ import annotations


from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from replaydiff.corpora import ReplayRecord, Request, header_value
from replaydiff.corpora.grpc import grpc_status, is_grpc, status_name
from replaydiff.corpora.protobuf import GrpcMethod, ProtoSchema
from replaydiff.diff.compare import grpc_method, is_call
from replaydiff.diff.excerpt import body_text
from replaydiff.diff.messages import call_text, request_messages_text
from replaydiff.fuzz.curl import curl_command
from replaydiff.fuzz.sender import FuzzTargets
from replaydiff.fuzz.session import Failure, SessionResult
from replaydiff.fuzz.verdict import failed

BODY_LINES = 30


def screen_text(body: bytes) -> str:
    """The differ's `body_text` (JSON indented so the two sides line up field by field, other text as is,
    binary summarized), clipped to a terminal screen."""
    lines = body_text(body).splitlines()
    clipped = lines[:BODY_LINES] + ([f"… {len(lines) - BODY_LINES} more lines"] if len(lines) > BODY_LINES else [])
    return "\n".join(line if len(line) <= 200 else line[:200] + "…" for line in clipped)


def request_text(request: Request, method: GrpcMethod | None = None) -> Text:
    """`method`: the gRPC method the schema says the request calls, to read its messages by field name."""
    lines = [f"{request.method} {request.target}", *(f"{name}: {value}" for name, value in request.headers)]
    if request.body:
        grpc = is_grpc(request.headers)
        messages = request_messages_text(request.body, method.input if method else None)
        lines += ["", _clipped(messages) if grpc else screen_text(request.body)]
    return Text("\n".join(lines))


def _clipped(text: str) -> str:
    lines = text.splitlines()
    return "\n".join(lines[:BODY_LINES] + ([f"… {len(lines) - BODY_LINES} more lines"] if len(lines) > BODY_LINES else []))


def answer_text(record: ReplayRecord, method: GrpcMethod | None = None) -> Text:
    response = record.response
    if response is None:
        final = record.final
        return Text(f"no answer: {final.error if final else 'not sent'}\n{final.error_detail if final else ''}")
    content_type = header_value(response.headers, "content-type") or ""
    head = f"{response.status} {response.reason}" + (f"\ncontent-type: {content_type}" if content_type else "")
    if is_call(response):  # the call's outcome, and its messages decoded
        head += f"\ngrpc-status: {status_name(grpc_status(response))}"
        return Text(f"{head}\n\n{_clipped(call_text(response, method))}", style="red" if failed(record) else "")
    return Text(f"{head}\n\n{screen_text(response.body)}", style="red" if failed(record) else "")


def failure_view(failure: Failure, targets: FuzzTargets, schema: ProtoSchema | None = None) -> Group:
    """`schema`: the one the messages were compared by, so they read here as the differences name them."""
    method = grpc_method(failure.baseline, schema)
    answers = Table(expand=True)
    answers.add_column(f"baseline {targets.baseline.base_url}")
    answers.add_column(f"candidate {targets.candidate.base_url}")
    answers.add_row(answer_text(failure.baseline, method), answer_text(failure.candidate, method))
    differences = Text("\n".join(f"  {d.kind}{' ' + d.location if d.location else ''}: {d.left} → {d.right}" for d in failure.differences))
    curls = Text("\n".join(f"  {t.name}: {curl_command(failure.request, t)}" for t in (targets.baseline, targets.candidate)))
    return Group(
        Text(f"✗ {failure.endpoint}: {failure.signature}", style="bold red"),
        Text("minimal diverging request:", style="bold"),
        request_text(failure.request, method),
        answers,
        Text("differences:", style="bold"),
        differences,
        Text("reproduce:", style="bold"),
        curls,
        Text(""),
    )


def summary_text(result: SessionResult) -> Text:
    verdict = f"{len(result.failures)} divergence(s)" if result.failures else "no divergence"
    return Text(
        f"fuzzed {result.endpoints} endpoint(s): {result.examples} examples in {result.elapsed_s:.1f} s "
        f"({result.rate:.0f}/s), seed {result.seed}: {verdict}",
        style="red" if result.failures else "green",
    )


def print_report(result: SessionResult, targets: FuzzTargets, console: Console) -> None:
    for failure in result.failures:
        console.print(failure_view(failure, targets, result.schema), soft_wrap=True)
    console.print(summary_text(result), soft_wrap=True)
