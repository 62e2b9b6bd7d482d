"""/metrics after a known run counts exactly what happened: on `mlgate serve`, and on gateway and
worker processes over RabbitMQ and Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlgate_client import MLGateClient
from mlgate_client.errors import InvalidArgument, JobFailed
from tests.support.cluster import Cluster
from tests.support.fresh import free_port
from tests.support.samples import DIABETES_FEATURES, DOC_ROW, SLOW_PARAMS
from tests.support.scraping import scrape, value


class System:
    def __init__(self, cluster: Cluster, address: str, gateway_port: int, worker_port: int):
        self.cluster, self.address = cluster, address
        self.gateway_port, self.worker_port = gateway_port, worker_port


@pytest.fixture(params=["memory", "rabbitmq", "redis"])
def system(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[System]:
    cluster = Cluster(tmp_path, request.param)
    gateway_port = free_port()
    try:
        if request.param == "memory":
            port = free_port()
            process = cluster._spawn(
                ["serve", "--port", str(port)], "serve", {"MLGATE_METRICS_PORT": str(gateway_port)}
            )
            cluster.gateways.append((process, f"127.0.0.1:{port}"))
            cluster.wait_serving(f"127.0.0.1:{port}", process)
            yield System(cluster, f"127.0.0.1:{port}", gateway_port, gateway_port)
        else:
            worker_port = free_port()
            address = cluster.start_gateway(MLGATE_METRICS_PORT=str(gateway_port))
            cluster.start_worker(MLGATE_WORKER_METRICS_PORT=str(worker_port))
            yield System(cluster, address, gateway_port, worker_port)
    finally:
        cluster.stop()


def test_metrics_count_a_known_run_exactly(system: System) -> None:
    trains, predicts = 2, 3
    with MLGateClient(system.address, timeout=30) as client:
        models = [
            client.train("diabetes", target="target", features=DIABETES_FEATURES).model_id
            for _ in range(trains)
        ]
        for _ in range(predicts):
            client.predict(models[0], [DOC_ROW])
        with pytest.raises(InvalidArgument):
            client.predict(models[0], [{"age": 0.1}])  # refused at the gateway: no job
        # Each parameter is valid alone; together scikit-learn refuses them when fitting.
        with pytest.raises(JobFailed):
            client.train(
                "diabetes",
                target="target",
                features=DIABETES_FEATURES,
                params={"bootstrap": False, "oob_score": True},
            )
        slow = client.submit_train(
            "diabetes", target="target", features=DIABETES_FEATURES, params=SLOW_PARAMS
        )
        assert client.cancel_job(slow).state == "cancelled"

    expected = {
        ("mlgate_jobs_submitted_total", ("kind", "train")): trains + 2,
        ("mlgate_jobs_submitted_total", ("kind", "predict")): predicts,
        ("mlgate_jobs_finished_total", ("kind", "train"), ("state", "succeeded")): trains,
        ("mlgate_jobs_finished_total", ("kind", "train"), ("state", "failed")): 1,
        ("mlgate_jobs_finished_total", ("kind", "train"), ("state", "cancelled")): 1,
        ("mlgate_jobs_finished_total", ("kind", "predict"), ("state", "succeeded")): predicts,
        ("mlgate_job_duration_seconds_count", ("kind", "train")): trains + 2,
        ("mlgate_job_duration_seconds_count", ("kind", "predict")): predicts,
        ("mlgate_inference_requests_total", ("code", "INVALID_ARGUMENT")): 1,
        ("mlgate_streams_open",): 0,
    }

    def gateway_counts() -> dict[tuple[object, ...], float]:
        samples = scrape(system.gateway_port)
        return {
            key: value(samples, key[0], **dict(key[1:]))  # type: ignore[arg-type]
            for key in expected
        }

    # The last event is recorded just before it is counted: allow that instant.
    deadline = time.monotonic() + 30
    while (found := gateway_counts()) != expected and time.monotonic() < deadline:
        time.sleep(0.1)  # a scrape is the only way to see another process's counters
    assert found == expected
    # A client leaves a stream once it has the final event; grpc may report that call CANCELLED
    # rather than OK when the server's generator had not returned yet. Either way it was answered.
    samples = scrape(system.gateway_port)
    answered = value(samples, "mlgate_inference_requests_total", code="OK") + value(
        samples, "mlgate_inference_requests_total", code="CANCELLED"
    )
    assert answered == predicts
    gateway = scrape(system.gateway_port)
    assert value(gateway, "mlgate_workers") == 1
    assert value(gateway, "mlgate_queue_depth", queue="predict") == 0
    assert value(gateway, "process_resident_memory_bytes") > 0

    worker = scrape(system.worker_port)
    assert value(worker, "mlgate_inference_batch_rows_count") == predicts
    assert value(worker, "mlgate_inference_batch_rows_sum") == predicts  # one row each
    assert value(worker, "mlgate_model_cache_misses_total") == 1
    assert value(worker, "mlgate_model_cache_hits_total") == predicts - 1
    assert value(worker, "mlgate_model_cache_bytes") > 0
    # Every job a worker took on its first attempt: the trains that ran, and the predictions.
    assert value(worker, "mlgate_job_queue_seconds_count", kind="predict") == predicts
