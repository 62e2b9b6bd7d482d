"""Per-version serving metrics on /metrics, on gateway and worker processes over RabbitMQ and
Redis: requests, errors and latency by name, version, alias and path (ModelInfer over gRPC and
REST, job-style Predict); unnamed models share one series; a deleted version's series go."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mlgate.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from mlgate.v1 import jobs_pb2, models_pb2
from tests.support.cluster import Cluster
from tests.support.fresh import free_port
from tests.support.gateway_calls import (
    diabetes_request,
    events_of,
    jobs,
    models,
    rows,
    trained_model,
)
from tests.support.oip import matrix_request, readme_matrix
from tests.support.samples import DOC_ROW
from tests.support.scraping import Samples, scrape


def _sample(samples: Samples, metric: str, labels: dict[str, str]) -> float:
    """A sample's value, 0.0 when absent (labels named ``name`` cannot be keyword arguments)."""
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


class Gateway:
    def __init__(self, address: str, metrics: int, http: int) -> None:
        self.address, self.metrics, self.http = address, metrics, http


@pytest.fixture(params=["rabbitmq", "redis"])
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    cluster = Cluster(tmp_path, request.param)
    try:
        metrics, http = free_port(), free_port()
        address = cluster.start_gateway(
            MLGATE_METRICS_PORT=str(metrics), MLGATE_HTTP_PORT=str(http)
        )
        cluster.start_worker()
        yield Gateway(address, metrics, http)
    finally:
        cluster.stop()


def _series(samples: Samples, name: str) -> set[tuple[tuple[str, str], ...]]:
    """The label sets of every per-version sample of model ``name``."""
    return {
        labels
        for (metric, labels) in samples
        if metric.startswith(("mlgate_model_", "mlgate_shadow_")) and ("name", name) in labels
    }


def _rest_infer(port: int, model: str) -> int:
    body = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP64",
                    "shape": [1, 9],
                    "data": readme_matrix().ravel().tolist(),
                }
            ]
        }
    ).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/models/{model}/infer", data=body, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_requests_errors_and_latency_per_version_and_path_then_deleted(gateway: Gateway) -> None:
    name = "metered"
    with grpc.insecure_channel(gateway.address) as channel:
        for _ in range(2):
            trained_model(channel, diabetes_request(model_name=name))
        unnamed = trained_model(channel, diabetes_request())
        models(channel).SetModelAlias(
            models_pb2.SetModelAliasRequest(name=name, alias="prod", version=1, shadow_version=2),
            timeout=30,
        )
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for model in (f"{name}@prod", f"{name}@prod", f"{name}/2", f"{name}/1", unnamed):
            stub.ModelInfer(matrix_request(model, readme_matrix(), raw=True), timeout=30)
        # A request the model refuses after it resolved: an error of that version.
        with pytest.raises(grpc.RpcError):
            stub.ModelInfer(matrix_request(f"{name}/2", readme_matrix()[:, :3], raw=True))
        assert _rest_infer(gateway.http, f"{name}@prod") == 200
        predict = jobs_pb2.PredictRequest(model_id=f"{name}@prod", rows=rows(DOC_ROW))
        assert events_of(jobs(channel).Predict(predict, timeout=60))[-1].state == (
            jobs_pb2.JOB_STATE_SUCCEEDED
        )

    samples = scrape(gateway.metrics)
    prod = {"name": name, "version": "1", "alias": "prod"}
    assert _sample(samples, "mlgate_model_requests_total", {**prod, "path": "infer"}) == 3
    assert _sample(samples, "mlgate_model_request_seconds_count", {**prod, "path": "infer"}) == 3
    assert _sample(samples, "mlgate_model_requests_total", {**prod, "path": "predict"}) == 1
    assert _sample(samples, "mlgate_model_request_seconds_sum", {**prod, "path": "predict"}) > 0
    two = {"name": name, "version": "2", "alias": "", "path": "infer"}
    assert _sample(samples, "mlgate_model_requests_total", two) == 2
    assert _sample(samples, "mlgate_model_errors_total", {**two, "code": "INVALID_ARGUMENT"}) == 1
    # Every unnamed model shares one series: ids never become labels.
    nameless = {"name": "", "version": "", "alias": "", "path": "infer"}
    assert _sample(samples, "mlgate_model_requests_total", nameless) == 1
    assert not any(unnamed in str(labels) for _, labels in samples)
    assert any(("version", "2") in labels for labels in _series(samples, name))

    with grpc.insecure_channel(gateway.address) as channel:
        registry = models(channel)
        registry.SetModelAlias(
            models_pb2.SetModelAliasRequest(name=name, alias="canary", version=1), timeout=30
        )
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        stub.ModelInfer(matrix_request(f"{name}@canary", readme_matrix(), raw=True), timeout=30)
        before = _series(scrape(gateway.metrics), name)
        assert any(("alias", "canary") in labels for labels in before), before
        registry.DeleteModelAlias(
            models_pb2.DeleteModelAliasRequest(name=name, alias="canary"), timeout=30
        )
        after_alias = _series(scrape(gateway.metrics), name)
        assert not any(("alias", "canary") in labels for labels in after_alias), after_alias

        # Version 2 is prod's shadow: deleting it (force) takes the alias too.
        deleted = registry.DeleteModel(
            models_pb2.DeleteModelRequest(model_id=f"{name}/2", force=True), timeout=30
        )
    after = _series(scrape(gateway.metrics), name)
    assert not any(("version", "2") in labels for labels in after), after
    if "prod" in deleted.removed_aliases:
        assert not any(("alias", "prod") in labels for labels in after), after
    # Version 1's own series stay: it was not deleted.
    assert any(("version", "1") in labels for labels in after), after
