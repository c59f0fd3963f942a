"""A gRPC replay that could not test is INCONCLUSIVE: its outcome is the grpc-status, not the HTTP 200 around it."""

from __future__ import annotations

import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc

from replaydiff.demo.samples import sample_path


def _refusing_server() -> tuple[grpc.Server, int]:
    """A catalog that answers every call UNAUTHENTICATED, as a sandbox does to masked credentials."""

    def refuse(request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "no valid token")

    handler = grpc.unary_unary_rpc_method_handler(refuse, request_deserializer=None, response_serializer=None)
    streaming = grpc.unary_stream_rpc_method_handler(refuse, request_deserializer=None, response_serializer=None)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("shop.Catalog", {"GetItem": handler, "ListItems": streaming}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def test_every_call_unauthenticated_is_inconclusive_naming_the_code(tmp_path: Path) -> None:
    server, port = _refusing_server()
    url = f"http://127.0.0.1:{port}"
    try:
        result = subprocess.run(
            [sys.executable, "-m", "replaydiff.cli", "run", str(sample_path("demo-catalog")), "--baseline", url,
             "--candidate", url, "--limit", "40", "--no-proto-reflection", "-o", str(tmp_path / "r.jsonl.zst")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        server.stop(0)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "INCONCLUSIVE" in result.stdout
    assert "answered UNAUTHENTICATED on every target where the recording had OK" in " ".join(result.stdout.split())
    assert "Traceback" not in result.stderr
