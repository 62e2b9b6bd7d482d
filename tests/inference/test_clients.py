"""The unmodified tritonclient against the real gateway: embedded, and gateway and worker
processes over RabbitMQ and Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mlgate.v1 import jobs_pb2
from tests.support.cluster import Cluster, delete_cluster_namespace
from tests.support.gateway_calls import (
    DIABETES_FEATURES,
    README_ROW,
    events_of,
    jobs,
    rows,
    trained_model,
)
from tests.support.samples import IRIS_ROW

ROOT = Path(__file__).resolve().parents[2]


def _predict(channel: grpc.Channel, model_id: str, row: dict[str, float]) -> jobs_pb2.PredictResult:
    request = jobs_pb2.PredictRequest(model_id=model_id, rows=rows(row))
    done = events_of(jobs(channel).Predict(request, timeout=60))[-1]
    assert done.state == jobs_pb2.JOB_STATE_SUCCEEDED, done
    return done.predict_result


def _check_with_tritonclient(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        regressor = trained_model(channel)
        classifier = trained_model(
            channel, jobs_pb2.TrainRequest(dataset_id="iris", target="target")
        )
        # What the job path answers: scikit-learn's own numbers (tests/e2e holds them equal).
        expected = _predict(channel, regressor, README_ROW)
        halved = _predict(channel, regressor, {k: v / 2 for k, v in README_ROW.items()})
        flower = _predict(channel, classifier, IRIS_ROW)
    out = subprocess.run(
        [sys.executable, "-m", "tests.support.triton_client", address, regressor, classifier],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert (found["live"], found["ready"], found["model_ready"]) == (True, True, True)
    assert found["unknown_ready"] is False
    assert [i["name"] for i in found["metadata"]["inputs"]] == DIABETES_FEATURES
    assert found["predict"] == [expected.predictions[0].number_value]
    assert str(found["predict"][0]).startswith("208.6445780005")
    assert found["predict_columns"] == [
        expected.predictions[0].number_value,
        halved.predictions[0].number_value,
    ]
    assert found["label"] == [flower.predictions[0].number_value]
    assert found["classes"] == [c.number_value for c in flower.classes]
    assert found["proba"] == [list(flower.probabilities[0].values)]
    assert found["unknown_status"] == "StatusCode.NOT_FOUND"


def test_tritonclient_on_the_embedded_system(embedded_gateway: str) -> None:
    _check_with_tritonclient(embedded_gateway)


@pytest.fixture(params=["rabbitmq", "redis"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    from tests.support.rabbitmq import require_rabbitmq
    from tests.support.redis import require_redis

    (require_redis if request.param == "redis" else require_rabbitmq)()
    running = Cluster(tmp_path, request.param)
    try:
        running.start_gateway()
        running.start_workers(2)
        yield running
    finally:
        running.stop()
        delete_cluster_namespace(request.param, running.namespace)


def test_tritonclient_on_gateway_and_worker_processes(cluster: Cluster) -> None:
    _check_with_tritonclient(cluster.gateways[0][1])
