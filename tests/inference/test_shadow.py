"""Shadow traffic on gateway and worker processes over RabbitMQ and Redis: answers always come
from the primary, every request is mirrored on an idle gateway, a flood drops (counted) rather
than queues, and the comparison equals what the two versions answer when asked directly."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris

from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from mlgate.v1 import jobs_pb2, models_pb2
from tests.support.cluster import Cluster
from tests.support.fresh import free_port
from tests.support.gateway_calls import diabetes_request, events_of, jobs, models, rows
from tests.support.gateway_calls import trained_model as trained
from tests.support.oip import FEATURES, fp64_output, matrix_request
from tests.support.scraping import Samples, scrape

IRIS_FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
# Rows sent in each request: ten of diabetes, kept small so a request is cheap.
X = load_diabetes(as_frame=True).frame[FEATURES].to_numpy()[:10]


def _sample(samples: Samples, metric: str, labels: dict[str, str]) -> float:
    """A sample's value, 0.0 when absent (labels named ``name`` cannot be keyword arguments)."""
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


class Gateways:
    def __init__(self, cluster: Cluster, idle: str, idle_metrics: int, small: str) -> None:
        self.cluster, self.idle, self.idle_metrics, self.small = cluster, idle, idle_metrics, small


@pytest.fixture(scope="module", params=["rabbitmq", "redis"])
def gateways(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateways]:
    """Two gateway processes and a worker on one broker: one with the default shadow bounds
    and /metrics, one whose shadow queue holds a single request (for the flood)."""
    cluster = Cluster(tmp_path_factory.mktemp(f"shadow-{request.param}"), request.param)
    try:
        metrics = free_port()
        idle = cluster.start_gateway(MLGATE_METRICS_PORT=str(metrics))
        small = cluster.start_gateway(MLGATE_SHADOW_QUEUE="1", MLGATE_SHADOW_CONCURRENCY="1")
        cluster.start_workers(2)
        yield Gateways(cluster, idle, metrics, small)
    finally:
        cluster.stop()


def _versions(address: str, name: str, *trains: jobs_pb2.TrainRequest) -> None:
    with grpc.insecure_channel(address) as channel:
        for train in trains:
            train.model_name = name
            trained(channel, train)


def _shadow_alias(address: str, name: str, version: int, shadow: int) -> None:
    with grpc.insecure_channel(address) as channel:
        models(channel).SetModelAlias(
            models_pb2.SetModelAliasRequest(
                name=name, alias="prod", version=version, shadow_version=shadow
            ),
            timeout=30,
        )


def _infer(stub: pb_grpc.GRPCInferenceServiceStub, model: str) -> pb.ModelInferResponse:
    response: pb.ModelInferResponse = stub.ModelInfer(
        matrix_request(model, X, raw=True), timeout=60
    )
    return response


def _comparison(address: str, name: str) -> models_pb2.GetShadowComparisonResponse:
    with grpc.insecure_channel(address) as channel:
        found: models_pb2.GetShadowComparisonResponse = models(channel).GetShadowComparison(
            models_pb2.GetShadowComparisonRequest(name=name, alias="prod"), timeout=30
        )
        return found


def _settled(
    address: str, name: str, sent: int, rows_each: int
) -> models_pb2.GetShadowComparisonResponse:
    """The comparison once every request sent is mirrored or dropped, and every mirrored one is
    answered or failed (the shadow runs after the answers: its figures follow a moment later)."""
    deadline = time.monotonic() + 60
    while True:
        found = _comparison(address, name)
        answered = found.rows + found.shadow_errors * rows_each
        if found.mirrored + found.dropped == sent and answered == found.mirrored * rows_each:
            return found
        if time.monotonic() > deadline:
            return found
        time.sleep(0.2)  # the shadow's figures are only observable by asking


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(np.ceil(q * len(ordered))) - 1)]


def test_modelinfer_answers_from_the_primary_mirrors_every_request_and_compares_exactly(
    gateways: Gateways,
) -> None:
    name = "shadow-reg"
    _versions(
        gateways.idle,
        name,
        diabetes_request(params={"max_depth": 3, "n_estimators": 20}),
        diabetes_request(params={"max_depth": 1, "n_estimators": 5}),
    )
    with grpc.insecure_channel(gateways.idle) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        primary = fp64_output(_infer(stub, f"{name}/1"))
        shadow = fp64_output(_infer(stub, f"{name}/2"))
        assert not np.array_equal(primary, shadow)  # two models that differ, or nothing to see
        _shadow_alias(gateways.idle, name, 1, 2)
        sent = 200
        for _ in range(sent):
            response = _infer(stub, f"{name}@prod")
            assert response.model_version == "1"
            np.testing.assert_array_equal(fp64_output(response), primary)

    found = _settled(gateways.idle, name, sent, len(X))
    assert found.shadow_version == 2 and found.task == "regression"
    assert found.dropped == 0 and found.shadow_errors == 0
    assert found.mirrored >= 0.99 * sent
    diffs = np.abs(primary - shadow).tolist()
    assert found.rows == len(diffs) * found.mirrored
    assert found.mean_abs_diff == pytest.approx(statistics.fmean(diffs), rel=1e-12)
    everything = diffs * found.mirrored
    assert found.abs_diff.p50 == pytest.approx(_nearest_rank(everything, 0.5), rel=1e-12)
    assert found.abs_diff.p99 == pytest.approx(_nearest_rank(everything, 0.99), rel=1e-12)
    assert 0 < found.primary_latency.p50 <= found.primary_latency.p99
    assert 0 < found.shadow_latency.p50 <= found.shadow_latency.p99

    samples = scrape(gateways.idle_metrics)
    shadow_labels = {"name": name, "version": "2"}
    assert _sample(samples, "mlgate_shadow_requests_total", shadow_labels) == found.mirrored
    assert _sample(samples, "mlgate_shadow_dropped_total", shadow_labels) == 0
    assert _sample(samples, "mlgate_shadow_abs_diff_count", shadow_labels) == found.rows
    assert _sample(samples, "mlgate_shadow_abs_diff_sum", shadow_labels) == pytest.approx(
        found.mean_abs_diff * found.rows
    )
    through = {"name": name, "version": "1", "alias": "prod", "path": "infer"}
    assert _sample(samples, "mlgate_model_requests_total", through) == sent

    compare = gateways.cluster.mlgate(gateways.idle, "models", "compare", f"{name}@prod")
    printed, errors = compare.communicate(timeout=60)
    assert compare.returncode == 0, errors
    assert f"mirrored      {found.mirrored}" in printed
    assert "dropped       0" in printed
    assert "abs diff      mean" in printed and "primary       p50" in printed


def _iris_rows(count: int) -> list[dict[str, float]]:
    frame = load_iris(as_frame=True).frame
    # Rows between the classes, where a stump and a forest disagree now and then.
    picked = frame.iloc[np.linspace(0, len(frame) - 1, count).astype(int)]
    return [{f: float(row[f]) for f in IRIS_FEATURES} for _, row in picked.iterrows()]


def _predict(channel: grpc.Channel, model: str, sent: list[dict[str, float]]) -> list[object]:
    events = events_of(
        jobs(channel).Predict(jobs_pb2.PredictRequest(model_id=model, rows=rows(*sent)), timeout=60)
    )
    assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED, events[-1]
    return [getattr(v, str(v.WhichOneof("kind"))) for v in events[-1].predict_result.predictions]


def test_predict_jobs_are_mirrored_and_classes_compared(gateways: Gateways) -> None:
    name = "shadow-cls"

    def iris(**params: int) -> jobs_pb2.TrainRequest:
        train = jobs_pb2.TrainRequest(dataset_id="iris", features=IRIS_FEATURES, target="target")
        train.params.update(params)
        return train

    _versions(
        gateways.idle,
        name,
        iris(max_depth=4, n_estimators=20),
        iris(max_depth=1, n_estimators=1),
    )
    sent = _iris_rows(30)
    with grpc.insecure_channel(gateways.idle) as channel:
        primary = _predict(channel, f"{name}/1", sent)
        shadow = _predict(channel, f"{name}/2", sent)
        agree = sum(a == b for a, b in zip(primary, shadow, strict=True))
        assert 0 < agree < len(sent)  # they disagree on some rows, or nothing is compared
        _shadow_alias(gateways.idle, name, 1, 2)
        requests = 20
        for _ in range(requests):
            assert _predict(channel, f"{name}@prod", sent) == primary

    found = _settled(gateways.idle, name, requests, len(sent))
    assert found.task == "classification"
    assert (found.mirrored, found.dropped, found.shadow_errors) == (requests, 0, 0)
    assert found.rows == len(sent) * requests
    assert found.agreement == pytest.approx(agree / len(sent), rel=1e-12)

    samples = scrape(gateways.idle_metrics)
    labels = {"name": name, "version": "2"}
    assert _sample(samples, "mlgate_shadow_agree_rows_total", labels) == agree * requests
    assert _sample(samples, "mlgate_shadow_disagree_rows_total", labels) == (
        (len(sent) - agree) * requests
    )
    through = {"name": name, "version": "1", "alias": "prod", "path": "predict"}
    assert _sample(samples, "mlgate_model_requests_total", through) == requests


def test_a_flood_drops_shadow_requests_and_counts_them_never_the_primary(
    gateways: Gateways,
) -> None:
    name = "shadow-flood"
    _versions(
        gateways.small,
        name,
        diabetes_request(params={"max_depth": 3, "n_estimators": 20}),
        diabetes_request(params={"max_depth": 3, "n_estimators": 200}),
    )
    _shadow_alias(gateways.small, name, 1, 2)
    threads, each = 16, 25
    wrong: list[str] = []
    with grpc.insecure_channel(gateways.small) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        primary = fp64_output(_infer(stub, f"{name}/1"))

        def client() -> None:
            for _ in range(each):
                try:
                    response = _infer(stub, f"{name}@prod")
                except grpc.RpcError as exc:
                    wrong.append(f"{exc.code()}: {exc.details()}")
                    continue
                if response.model_version != "1" or not np.array_equal(
                    fp64_output(response), primary
                ):
                    wrong.append(f"answered by {response.model_version}")

        running = [threading.Thread(target=client) for _ in range(threads)]
        for thread in running:
            thread.start()
        for thread in running:
            thread.join(120)
    assert wrong == []
    found = _settled(gateways.small, name, threads * each, len(X))
    assert found.mirrored + found.dropped == threads * each
    assert found.dropped > 0
    assert found.shadow_errors == 0
