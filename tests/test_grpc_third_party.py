"""A gRPC service nobody here wrote, end to end as the README has a user do it: grpcio's own health service
(grpcio-health-checking) with grpcio's server reflection, recorded in cleartext through `replaydiff record` from a
real grpcio client, then `replaydiff run` and `replaydiff fuzz` against a baseline, a second baseline and a
candidate that reports one of its services NOT_SERVING; the reports name the messages' fields, learnt by
reflection."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from replaydiff.corpora import CorpusReader
from tests.servers import self_signed_certificate
from tests.test_fuzz_grpc import run_fuzz_command
from tests.test_record_grpc import start_recorder
from tests.waiting import readable_records, wait_until

REPLAYDIFF = [sys.executable, "-m", "replaydiff.cli"]
SERVICES = ["", "shop.Catalog", "shop.Orders"]
"""The names a health client asks about ("" is the server as a whole); any other is NOT_FOUND."""
ROUNDS = 5
CHECK = "grpc grpc.health.v1.Health/Check"


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


@contextmanager
def health_server(not_serving: frozenset[str] = frozenset(), *, reflection_v1_only: bool = False,
                  tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """grpcio's health servicer, every service in `SERVICES` SERVING but `not_serving`, with reflection; its URL.

    `reflection_v1_only`: grpcio's reflection servicer offered only as v1, as grpc-java's `ProtoReflectionServiceV1`
    is (grpcio itself offers v1alpha; the two speak the same messages). `tls`: (certificate, key) to serve over
    TLS instead of cleartext."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    status = health_pb2.HealthCheckResponse
    for name in SERVICES:
        servicer.set(name, status.NOT_SERVING if name in not_serving else status.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    if reflection_v1_only:
        reflecting = reflection.ReflectionServicer([health.SERVICE_NAME, REFLECTION_V1])
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(REFLECTION_V1, {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                reflecting.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            ),
        })])  # fmt: skip
    else:
        reflection.enable_server_reflection([health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    if tls is None:
        port, scheme = server.add_insecure_port("127.0.0.1:0"), "http"
    else:
        certificate, key = tls
        credentials = grpc.ssl_server_credentials([(key.read_bytes(), certificate.read_bytes())])
        port, scheme = server.add_secure_port("127.0.0.1:0", credentials), "https"
    server.start()
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.stop(0)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    with ExitStack() as stack:
        yield {
            "baseline": stack.enter_context(health_server()),
            "baseline2": stack.enter_context(health_server()),
            "same": stack.enter_context(health_server()),
            "changed": stack.enter_context(health_server(not_serving=frozenset({"shop.Orders"}))),
            "baseline_v1": stack.enter_context(health_server(reflection_v1_only=True)),
        }


@pytest.fixture(scope="module")
def corpus(servers: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Health checks from a grpcio client through the recorder: each service, and one the server does not know."""
    tmp_path = tmp_path_factory.mktemp("health")
    proxy, url, corpus = start_recorder(tmp_path, servers["baseline"])
    expected = (len(SERVICES) + 1) * ROUNDS
    try:
        with grpc.insecure_channel(url.removeprefix("http://")) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(ROUNDS):
                for name in SERVICES:
                    answer = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
                    assert answer.status == health_pb2.HealthCheckResponse.SERVING
                with pytest.raises(grpc.RpcError) as unknown:
                    stub.Check(health_pb2.HealthCheckRequest(service="shop.Unknown"), timeout=10)
                assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        wait_until(lambda: readable_records(corpus, CorpusReader) == expected,
                   f"the recorder to flush {expected} calls")
        assert proxy.stop() == 0, "".join(proxy.lines)
    finally:
        proxy.kill()
    return corpus


@pytest.fixture(scope="module")
def tls_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    """The same service over TLS, with a certificate of a private CA: the URLs, and the CA's file."""
    certificate, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    with ExitStack() as stack:
        yield {
            "baseline": stack.enter_context(health_server(tls=(certificate, key))),
            "baseline2": stack.enter_context(health_server(tls=(certificate, key))),
            "changed": stack.enter_context(health_server(frozenset({"shop.Orders"}), tls=(certificate, key))),
        }, certificate


def run(
    corpus: Path, servers: dict[str, str], candidate: str, baseline: str = "baseline", *extra: str | Path
) -> tuple[subprocess.CompletedProcess[str], dict]:  # type: ignore[type-arg]
    """`replaydiff run` of the corpus; its JSON report."""
    report = corpus.with_name(f"{candidate}-{baseline}-{len(extra)}.json")
    result = subprocess.run(
        [*REPLAYDIFF, "run", corpus, "--baseline", servers[baseline], "--baseline2", servers["baseline2"],
         "--candidate", servers[candidate], "-o", report.with_suffix(".jsonl.zst"), "--json", report, *extra],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    return result, json.loads(report.read_text())


@pytest.mark.parametrize("baseline", ["baseline", "baseline_v1"])
def test_the_candidate_that_stopped_serving_is_found_by_field_name(
    corpus: Path, servers: dict[str, str], baseline: str
) -> None:
    """Reflection v1alpha (grpcio's) or v1 alone (grpc-java's `ProtoReflectionServiceV1`) gives the field names."""
    result, data = run(corpus, servers, "changed", baseline)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"decoded by schema: server reflection of {servers[baseline].removeprefix('http://')}" in result.stdout
    [finding] = data["findings"]
    assert finding["title"] == f"`$.status` changed on {CHECK}"
    [divergence] = data["divergences"]
    assert (divergence["location"], divergence["count"], divergence["total"]) == ("$.status", ROUNDS, 4 * ROUNDS)
    example = divergence["examples"][0]
    assert (example["baseline"], example["candidate"]) == ('"SERVING"', '"NOT_SERVING"')


def test_a_candidate_like_the_baseline_is_the_same(corpus: Path, servers: dict[str, str]) -> None:
    result, data = run(corpus, servers, "same")
    assert result.returncode == 0, result.stdout + result.stderr
    assert data["divergences"] == [] and data["verdict"] == "same"


def test_fuzzing_finds_the_service_that_stopped_serving(corpus: Path, servers: dict[str, str]) -> None:
    changed = run_fuzz_command(corpus, {**servers, "candidate": servers["changed"]}, corpus.parent)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert f"✗ {CHECK}: body $.status" in changed.stdout
    # the minimal request asks about the service the candidate changed, read by the schema reflection gave
    assert 'gRPC messages of grpc.health.v1.HealthCheckRequest:\n{\n  "service": "shop.Orders"' in changed.stdout
    same = run_fuzz_command(corpus, {**servers, "candidate": servers["same"]}, corpus.parent)
    assert same.returncode == 0, same.stdout + same.stderr


def test_over_tls_the_schema_comes_by_reflection_trusting_the_ca_the_replay_trusts(
    corpus: Path, tls_servers: tuple[dict[str, str], Path]
) -> None:
    servers, ca = tls_servers
    result, data = run(corpus, servers, "changed", "baseline", "--ca-cert", ca)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"decoded by schema: server reflection of {servers['baseline'].removeprefix('https://')}" in result.stdout
    assert [finding["title"] for finding in data["findings"]] == [f"`$.status` changed on {CHECK}"]
    # --insecure: grpcio cannot skip verification, which is said at once, in one line; the diff goes on by field number
    insecure, data = run(corpus, servers, "changed", "baseline", "--insecure")
    assert insecure.returncode == 1, insecure.stdout + insecure.stderr
    [note] = [line for line in insecure.stdout.splitlines() if line.startswith("schema:")]
    assert "--insecure skips verification" in note and "compared by wire format" in note
    wire_title = f'`$["1"]` changed on {CHECK} (gRPC wire format, no schema)'
    assert [finding["title"] for finding in data["findings"]] == [wire_title]
    assert "Handshake" not in insecure.stderr + result.stderr  # grpc's own TLS log lines stay quiet


def test_fuzzing_over_tls_trusts_the_ca_given(corpus: Path, tls_servers: tuple[dict[str, str], Path]) -> None:
    servers, ca = tls_servers
    found = run_fuzz_command(corpus, {**servers, "candidate": servers["changed"]}, corpus.parent, "--ca-cert", ca)
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"✗ {CHECK}: body $.status" in found.stdout
