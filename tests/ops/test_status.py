"""`mlgate status` and health: what the gateway says of its broker, storage, workers and queues."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mlgate.v1 import models_pb2, models_pb2_grpc
from mlgate_client import MLGateClient
from server.app import LIVENESS_SERVICE
from tests.support.cluster import MLGATE, Cluster
from tests.support.s3 import S3Server, start_seaweedfs
from tests.support.samples import DIABETES_FEATURES
from tests.support.system import gateway_settings, running_gateway
from tests.support.waiting import wait_for


def cli(address: str, *args: str) -> tuple[int, str]:
    done = subprocess.run(
        [MLGATE, "--address", address, *args], capture_output=True, text=True, timeout=60
    )
    return done.returncode, done.stdout + done.stderr


def status(address: str) -> dict[str, Any]:
    code, out = cli(address, "status", "--json")
    assert code in (0, 1), out
    return dict(json.loads(out))


def queue(found: dict[str, Any], name: str) -> tuple[int, int]:
    (entry,) = [q for q in found["queues"] if q["name"] == name]
    return entry["depth"], entry["consumers"]


@pytest.mark.parametrize("broker", ["rabbitmq", "redis"])
def test_status_counts_workers_and_waiting_jobs(broker: str, tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, broker)
    try:
        address = cluster.start_gateway()
        found = status(address)
        assert found["workers"] == 0
        assert {d["name"]: d["healthy"] for d in found["dependencies"]} == {
            "broker": True,
            "job_store": True,
            "storage": True,
        }
        with MLGateClient(address, timeout=30) as client:
            jobs = [
                client.submit_train("diabetes", target="target", features=DIABETES_FEATURES)
                for _ in range(2)
            ]
        wait_for(lambda: queue(status(address), "train") == (2, 0), 20, "2 train jobs waiting")
        code, shown = cli(address, "jobs", "get", jobs[0])
        assert code == 0 and "no worker is consuming the train queue" in shown, shown

        cluster.start_worker()
        with MLGateClient(address, timeout=30) as client:
            for job in jobs:
                assert client.wait(job).model_id  # raises unless the job succeeded
        wait_for(lambda: status(address)["workers"] == 1, 20, "one worker")
        assert queue(status(address), "train") == (0, 1)
        code, shown = cli(address, "jobs", "get", jobs[0])
        assert "no worker" not in shown

        cluster.start_worker()
        wait_for(lambda: status(address)["workers"] == 2, 20, "two workers")
        code, text = cli(address, "status")
        assert code == 0 and "workers:" in text and "train" in text, text
    finally:
        cluster.stop()


def test_an_embedded_system_has_its_worker(embedded_gateway: str) -> None:
    found = status(embedded_gateway)
    assert found["workers"] == 1
    assert queue(found, "predict") == (0, 1)


def health(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service=service)
        return int(stub.Check(request, timeout=5).status)


@pytest.fixture
def private_s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[S3Server, Any]]:
    (tmp_path / "weed").mkdir()
    server, stop = start_seaweedfs(tmp_path / "weed")
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    try:
        yield server, stop
    finally:
        stop()


@pytest.mark.slow
def test_health_follows_the_object_store(private_s3, tmp_path: Path) -> None:
    server, stop = private_s3
    url = f"s3://{server.bucket}/{uuid.uuid4().hex[:8]}"
    gateway = running_gateway(gateway_settings(tmp_path / "data", storage_url=url))
    try:
        assert health(gateway.address) == health_pb2.HealthCheckResponse.SERVING
        stop()
        wait_for(
            lambda: health(gateway.address) == health_pb2.HealthCheckResponse.NOT_SERVING,
            30,
            "NOT_SERVING with the object store stopped",
        )
        # A liveness probe asks this name: waiting out an outage is no reason to restart.
        assert health(gateway.address, LIVENESS_SERVICE) == health_pb2.HealthCheckResponse.SERVING
        found = status(gateway.address)
        (storage,) = [d for d in found["dependencies"] if d["name"] == "storage"]
        assert not storage["healthy"] and storage["kind"] == "s3"
        assert "127.0.0.1" not in storage["detail"] and server.secret_key not in json.dumps(found)
        assert cli(gateway.address, "status")[0] == 1  # unhealthy: a non-zero exit for scripts
    finally:
        gateway.stop()


@pytest.mark.slow
def test_a_missing_bucket_is_named_and_refused_with_failed_precondition(
    private_s3, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = running_gateway(
        gateway_settings(tmp_path / "data", storage_url="s3://no-such-bucket-mlgate/")
    )
    try:
        assert "no-such-bucket-mlgate" in caplog.text  # reported at start, by name
        assert health(gateway.address) == health_pb2.HealthCheckResponse.NOT_SERVING
        (storage,) = [d for d in status(gateway.address)["dependencies"] if d["name"] == "storage"]
        assert "no-such-bucket-mlgate" in storage["detail"]
        with (
            grpc.insecure_channel(gateway.address) as channel,
            pytest.raises(grpc.RpcError) as caught,
        ):
            models_pb2_grpc.ModelServiceStub(channel).ListModels(
                models_pb2.ListModelsRequest(), timeout=10
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION, caught.value.details()
    finally:
        gateway.stop()
