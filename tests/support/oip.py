"""Open Inference Protocol tensors for tests, and the seed forest mlgate's must equal bit for bit."""

from __future__ import annotations

import functools

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import train_test_split

from mlgate.oip import grpc_predict_v2_pb2 as pb
from tests.support.gateway_calls import DIABETES_FEATURES, README_ROW

__all__ = ["FEATURES", "fp64_output", "matrix_request", "readme_matrix", "seed_forest"]

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
