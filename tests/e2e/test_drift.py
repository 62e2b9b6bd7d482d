"""Input drift end to end: a model trained by a worker records its inputs' reference; rows served
through ModelInfer and through Predict fill the gateway's window; GetModelDrift and the metrics
endpoint flag the feature shifted by two standard deviations and no other."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from sklearn.datasets import load_diabetes

from mlgate.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from mlgate.v1 import jobs_pb2, models_pb2
from mlgate_client.cli import main
from tests.support.background import BackgroundGateway
from tests.support.gateway_calls import (
    DIABETES_FEATURES,
    diabetes_request,
    events_of,
    jobs,
    models,
    trained_model,
)
from tests.support.oip import matrix_request
from tests.support.rest_client import RestClient
from tests.support.scraping import scrape
from tests.support.system import gateway_settings, running_gateway
from tests.support.waiting import wait_for

NAME = "drift-diabetes"
ROWS = 1500


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BackgroundGateway, Path]]:
    data = tmp_path_factory.mktemp("drift") / "data"
    gateway = running_gateway(gateway_settings(data, metrics_port=0, http_port=0))
    yield gateway, data
    gateway.stop()


@pytest.fixture
def channel(system: tuple[BackgroundGateway, Path]) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(system[0].address) as opened:
        yield opened


def _trained(channel: grpc.Channel) -> models_pb2.Model:
    """A new version of NAME, a forest on the built-in diabetes data."""
    model_id = trained_model(
        channel, diabetes_request(model_name=NAME, params={"n_estimators": 20})
    )
    return models(channel).GetModel(models_pb2.GetModelRequest(model_id=model_id)).model


def _served(shifted: str, seed: int) -> np.ndarray:
    """ROWS rows drawn from the diabetes data, ``shifted`` moved by two standard deviations."""
    X: np.ndarray = load_diabetes(as_frame=True).frame[DIABETES_FEATURES].to_numpy()
    rows: np.ndarray = X[np.random.default_rng(seed).integers(0, len(X), ROWS)]
    column = DIABETES_FEATURES.index(shifted)
    rows[:, column] += 2 * X[:, column].std()
    return rows


def _settled(channel: grpc.Channel, reference: str) -> models_pb2.GetModelDriftResponse:
    """The drift once the window is full and the drift thread has binned everything sent."""
    stub = models(channel)
    request = models_pb2.GetModelDriftRequest(model_id=reference)
    seen: list[models_pb2.GetModelDriftResponse] = []

    def still() -> bool:
        seen.append(stub.GetModelDrift(request, timeout=10))
        if len(seen) >= 2 and seen[-1].window_rows == 1000 and seen[-1] == seen[-2]:
            return True
        time.sleep(0.2)
        return False

    wait_for(still, 20, f"a full, settled drift window for {reference}")
    return seen[-1]


def _assert_only(answer: models_pb2.GetModelDriftResponse, shifted: str) -> None:
    assert answer.has_reference and answer.rows_seen == ROWS and answer.window_rows == 1000
    found = {f.feature: (f.psi, f.level) for f in answer.features}
    assert set(found) == set(DIABETES_FEATURES)
    assert found[shifted][0] > 0.25 and found[shifted][1] == "major", found
    others = {name: psi for name, (psi, _level) in found.items() if name != shifted}
    assert max(others.values()) < 0.1, others
    assert {found[name][1] for name in others} == {"ok"}


def test_training_records_the_reference(channel: grpc.Channel) -> None:
    model = _trained(channel)
    assert set(model.input_reference) == set(DIABETES_FEATURES)
    bmi = model.input_reference["bmi"]
    assert len(bmi.edges) == 9 and len(bmi.shares) == 10
    assert list(bmi.edges) == sorted(bmi.edges)
    assert sum(bmi.shares) == pytest.approx(1.0)


def test_modelinfer_rows_shifted_in_one_feature_flag_it_alone(
    channel: grpc.Channel, system: tuple[BackgroundGateway, Path]
) -> None:
    model = _trained(channel)
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    port = system[0].gateway.http_port
    assert port is not None
    with RestClient(port) as rest:
        # Both bindings: gRPC (raw tensors) and REST (JSON), a request each in turn.
        for i, part in enumerate(np.split(_served("bmi", seed=1), 15)):
            if i % 2:
                tensor = {"name": "input", "datatype": "FP64", "shape": list(part.shape)}
                body = {"inputs": [{**tensor, "data": part.ravel().tolist()}]}
                path = f"/v2/models/{NAME}/versions/{model.version}/infer"
                assert rest.call("POST", path, body).status == 200
            else:
                request = matrix_request(NAME, part, raw=True)
                request.model_version = str(model.version)
                stub.ModelInfer(request, timeout=30)
    answer = _settled(channel, f"{NAME}/{model.version}")
    _assert_only(answer, "bmi")
    assert (answer.name, answer.version, answer.model_id) == (NAME, model.version, model.id)

    # The metric says the same, labelled by name and version; deleting the version removes it.
    port = system[0].gateway.metrics_port
    assert port is not None
    samples = scrape(port)
    for feature in answer.features:
        labels = {"name": NAME, "version": str(model.version), "feature": feature.feature}
        key = ("mlgate_feature_drift_psi", tuple(sorted(labels.items())))
        assert samples[key] == pytest.approx(feature.psi)
    models(channel).DeleteModel(models_pb2.DeleteModelRequest(model_id=model.id), timeout=10)
    gone = [k for k in scrape(port) if k[0] == "mlgate_feature_drift_psi"]
    assert ("version", str(model.version)) not in {label for _n, ls in gone for label in ls}


def test_predict_rows_shifted_in_one_feature_flag_it_alone(
    channel: grpc.Channel,
    system: tuple[BackgroundGateway, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = _trained(channel)
    models(channel).SetModelAlias(
        models_pb2.SetModelAliasRequest(name=NAME, alias="drifting", version=model.version)
    )
    served = _served("s5", seed=2)
    for part in np.split(served, 3):
        request = jobs_pb2.PredictRequest(model_id=f"{NAME}@drifting")
        for j, name in enumerate(DIABETES_FEATURES):
            request.columns.add(name=name).doubles.values.extend(part[:, j].tolist())
        events = events_of(jobs(channel).Predict(request, timeout=60))
        assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED, events[-1]
    _assert_only(_settled(channel, model.id), "s5")

    # The CLI: a line per feature, flagged; and the same as JSON.
    address = system[0].address
    assert main(["--address", address, "models", "drift", f"{NAME}@drifting"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"{NAME}/{model.version} ({model.id}): 1,000 rows in the window")
    lines = {line.split()[0]: line.split()[1:] for line in printed[2:]}
    assert lines["s5"][1:] == ["major", "!!"] and float(lines["s5"][0]) > 0.25
    assert lines["bmi"][1:] == ["ok"]
    assert main(["--address", address, "--json", "models", "drift", f"{NAME}@drifting"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["version"] == model.version and found["window_rows"] == 1000
    assert {f["feature"]: f["level"] for f in found["features"]}["s5"] == "major"


def test_a_weighted_alias_reports_its_heaviest_route(channel: grpc.Channel) -> None:
    light, heavy = _trained(channel), _trained(channel)
    routes = [
        models_pb2.AliasRoute(version=light.version, weight=30),
        models_pb2.AliasRoute(version=heavy.version, weight=70),
    ]
    models(channel).SetModelAlias(
        models_pb2.SetModelAliasRequest(name=NAME, alias="canary", routes=routes), timeout=10
    )
    for _ in range(3):  # whichever the draws, the heaviest route is reported
        answer = models(channel).GetModelDrift(
            models_pb2.GetModelDriftRequest(model_id=f"{NAME}@canary"), timeout=10
        )
        assert (answer.version, answer.model_id) == (heavy.version, heavy.id)


def test_a_model_trained_before_references_says_no_reference(
    channel: grpc.Channel, system: tuple[BackgroundGateway, Path]
) -> None:
    model = _trained(channel)
    # As an earlier mlgate wrote it: the manifest without the reference.
    manifest = system[1] / "storage" / "models" / model.id / "manifest.json"
    stored = json.loads(manifest.read_text())
    del stored["model"]["inputReference"]
    manifest.write_text(json.dumps(stored))
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    stub.ModelInfer(matrix_request(model.id, _served("bmi", seed=3)[:10], raw=True), timeout=30)
    answer = models(channel).GetModelDrift(
        models_pb2.GetModelDriftRequest(model_id=model.id), timeout=10
    )
    assert not answer.has_reference and answer.rows_seen == 10
    assert [(f.feature, f.level, f.psi) for f in answer.features] == [
        (name, "no reference", 0.0) for name in DIABETES_FEATURES
    ]


def test_an_unknown_model_is_not_found(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        models(channel).GetModelDrift(
            models_pb2.GetModelDriftRequest(model_id="no-such-model"), timeout=10
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
