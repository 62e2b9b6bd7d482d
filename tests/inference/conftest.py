"""Fixtures for online inference: a served seed forest, scikit-learn's own copy of it, a stub."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import train_test_split

from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.support.background import BackgroundGateway
from tests.support.gateway_calls import (
    DIABETES_FEATURES,
    README_ROW,
    diabetes_request,
    trained_model,
)
from tests.support.system import gateway_settings, running_gateway

FEATURES = DIABETES_FEATURES


@functools.cache
def seed_forest() -> RandomForestRegressor:
    """The README's forest, fitted here by hand: what mlgate's must equal, bit for bit."""
    frame = load_diabetes(as_frame=True).frame
    X_train, _X_test, y_train, _y_test = train_test_split(
        frame[FEATURES], frame["target"], test_size=0.2, random_state=42
    )
    return RandomForestRegressor(max_depth=3, n_estimators=100, random_state=42).fit(
        X_train.to_numpy(), y_train
    )


def readme_matrix() -> np.ndarray:
    return np.array([[README_ROW[name] for name in FEATURES]], dtype=np.float64)


def matrix_request(
    model: str, X: np.ndarray, *, raw: bool, name: str = "input"
) -> pb.ModelInferRequest:
    """One FP64 tensor [N, F], raw or typed."""
    request = pb.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name=name, datatype="FP64", shape=list(X.shape))
    if raw:
        request.raw_input_contents.append(X.astype("<f8").tobytes())
    else:
        tensor.contents.fp64_contents.extend(X.ravel().tolist())
    return request


def fp64_output(response: pb.ModelInferResponse, name: str = "predict") -> np.ndarray:
    for i, output in enumerate(response.outputs):
        if output.name == name:
            if response.raw_output_contents:
                values = np.frombuffer(response.raw_output_contents[i], dtype="<f8")
            else:
                values = np.array(output.contents.fp64_contents, dtype=np.float64)
            return values.reshape(list(output.shape))
    raise AssertionError(f"no output {name} in {response}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BackgroundGateway, str]]:
    """An embedded gateway (batches may wait up to 50 ms, so batching shows) and the README's
    forest trained on it, named diabetes-rf."""
    data: Path = tmp_path_factory.mktemp("inference") / "data"
    gateway = running_gateway(gateway_settings(data, batch_max_delay_us=50_000))
    with grpc.insecure_channel(gateway.address) as channel:
        model_id = trained_model(channel, diabetes_request(model_name="diabetes-rf"))
    yield gateway, model_id
    gateway.stop()


@pytest.fixture
def stub(served: tuple[BackgroundGateway, str]) -> Iterator[pb_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(served[0].address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


@pytest.fixture
def model_id(served: tuple[BackgroundGateway, str]) -> str:
    return served[1]
