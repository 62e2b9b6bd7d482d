"""Inference when things break: the broker stops, a worker dies holding a request."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from mlgate.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.support.broker_outages import Outage, wait_status
from tests.support.broker_outages import outage as outage  # the fixture, shared
from tests.support.cluster import Cluster, delete_cluster_namespace
from tests.support.fresh import unique_namespace
from tests.support.gateway_calls import trained_model
from tests.support.oip import fp64_output, matrix_request, readme_matrix, seed_forest
from tests.support.system import gateway_settings, running_gateway


def _infer(address: str, model_id: str, timeout: float) -> tuple[grpc.StatusCode, float]:
    """The status of one ModelInfer and how long it took."""
    started = time.monotonic()
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        try:
            response = stub.ModelInfer(
                matrix_request(model_id, readme_matrix(), raw=True), timeout=timeout
            )
        except grpc.RpcError as exc:
            return exc.code(), time.monotonic() - started
    assert fp64_output(response)[0] == seed_forest().predict(readme_matrix())[0]
    return grpc.StatusCode.OK, time.monotonic() - started


@pytest.mark.slow
def test_a_stopped_broker_is_unavailable_at_once_and_inference_comes_back(
    outage: Outage, tmp_path: Path
) -> None:
    settings = gateway_settings(
        tmp_path / "data",
        broker=outage.broker,
        broker_url=outage.url,
        namespace=unique_namespace("infer-outage"),
    )
    gateway = running_gateway(settings)
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            model_id = trained_model(channel)
        assert _infer(gateway.address, model_id, 30)[0] == grpc.StatusCode.OK
        outage.stop()
        wait_status(gateway.address, health_pb2.HealthCheckResponse.NOT_SERVING)
        code, took = _infer(gateway.address, model_id, 20)
        assert code == grpc.StatusCode.UNAVAILABLE
        assert took < 10, f"UNAVAILABLE after {took:.1f}s: it should not wait out the deadline"
        outage.start()
        wait_status(gateway.address, health_pb2.HealthCheckResponse.SERVING)
        # The reply path reconnects on its own, with backoff: the first calls may still fail.
        deadline = time.monotonic() + 60
        while (code := _infer(gateway.address, model_id, 10)[0]) != grpc.StatusCode.OK:
            assert code == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() < deadline, "inference did not come back within 60s"
    finally:
        gateway.stop()


@pytest.fixture(params=["rabbitmq", "redis"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path):
    from tests.support.rabbitmq import require_rabbitmq
    from tests.support.redis import require_redis

    (require_redis if request.param == "redis" else require_rabbitmq)()
    running = Cluster(tmp_path, request.param)
    try:
        yield running
    finally:
        running.stop()
        delete_cluster_namespace(request.param, running.namespace)


@pytest.mark.slow
def test_a_worker_killed_holding_a_request_costs_an_error_or_a_retry_never_a_hang(
    cluster: Cluster,
) -> None:
    address = cluster.start_gateway()
    first = cluster.start_worker()
    with grpc.insecure_channel(address) as channel:
        model_id = trained_model(channel)
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        # A stopped worker still takes what its broker connection is handed, and never answers.
        first.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        call = stub.ModelInfer.future(
            matrix_request(model_id, readme_matrix(), raw=True), timeout=8
        )
        time.sleep(1.0)  # for the broker to hand the request over: a stopped process says nothing
        cluster.kill(first)
        cluster.start_worker()
        try:
            call.result()
            code = grpc.StatusCode.OK  # RabbitMQ handed it back and it was run once more
        except grpc.RpcError as exc:
            code = exc.code()
        took = time.monotonic() - started
    assert code in (
        grpc.StatusCode.OK,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNAVAILABLE,
    )
    assert took < 8 + 2, f"answered after {took:.1f}s for an 8s deadline"
    assert _infer(address, model_id, 30)[0] == grpc.StatusCode.OK
