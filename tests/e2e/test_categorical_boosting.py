"""hist_gradient_boosting given ``categorical_features``, through a gateway and its worker.

Given categorical features, scikit-learn's histogram gradient boosting encodes them with a
preprocessor of its own that holds a function. Before: mlgate's format did not describe it, the
model was saved with skops, and loading refused the function's types, so the job SUCCEEDED and
every Predict, ModelInfer and ExportModel of the model failed DATA_LOSS. Now the artifact keeps the
preprocessor's categories and loading rebuilds it (``workers.formats.categorical``).
"""

from __future__ import annotations

import io
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
from google.protobuf import json_format, struct_pb2

from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from mlgate.v1 import jobs_pb2
from storage.models import DEFAULT_MAX_MODEL_BYTES, Encoded
from tests.support.gateway_calls import events_of, jobs, trained_model
from tests.support.houses import row_structs
from tests.support.oip import fp64_output
from tests.support.registry_steps import export, upload
from workers.formats import decode

_FEATURES = ["x", "zone", "colour"]
# What the estimator reads: colour's one-hot columns (blue, green, red) first, then x and zone.
_ZONE_IS_CATEGORICAL = [False, False, False, False, True]


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 400
    zone = rng.integers(0, 9, n).astype(float)
    zone[::23] = np.nan
    effect = rng.normal(0, 3, 9)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "zone": zone,
            "colour": rng.choice(["red", "green", "blue"], n).tolist(),
        }
    )
    price = frame["x"] + np.where(np.isnan(zone), 0.0, effect[np.nan_to_num(zone).astype(int)])
    frame["price"] = price + (frame["colour"] == "red")
    frame["grade"] = np.where(price > np.median(price), "high", "low")
    return frame


def _rows() -> pd.DataFrame:
    rows = _frame()[_FEATURES].iloc[:12].reset_index(drop=True)
    rows.loc[3, "zone"] = 99.0  # a zone training never saw
    rows.loc[4, "zone"] = np.nan
    return rows


def _train(channel: grpc.Channel, target: str) -> str:
    params = struct_pb2.Struct()
    params.update({"categorical_features": _ZONE_IS_CATEGORICAL, "max_iter": 30})
    request = jobs_pb2.TrainRequest(
        dataset_id="zones",
        target=target,
        exclude=["grade" if target == "price" else "price"],
        estimator="hist_gradient_boosting",
        params=params,
        model_name=f"zones-{target}",
    )
    return trained_model(channel, request)


def _infer_request(model_id: str, rows: pd.DataFrame) -> pb.ModelInferRequest:
    """x and zone as FP64 tensors (NaN a blank), colour as BYTES."""
    request = pb.ModelInferRequest(model_name=model_id)
    for name in ("x", "zone"):
        request.inputs.add(name=name, datatype="FP64", shape=[len(rows)])
        request.raw_input_contents.append(rows[name].to_numpy("<f8").tobytes())
    request.inputs.add(name="colour", datatype="BYTES", shape=[len(rows)])
    texts = [str(v).encode() for v in rows["colour"]]
    request.raw_input_contents.append(b"".join(len(t).to_bytes(4, "little") + t for t in texts))
    return request


def _predicted(channel: grpc.Channel, model_id: str, rows: pd.DataFrame) -> list[Any]:
    request = jobs_pb2.PredictRequest(model_id=model_id, rows=row_structs(rows))
    result = events_of(jobs(channel).Predict(request, timeout=60))[-1]
    assert result.state == jobs_pb2.JOB_STATE_SUCCEEDED, result
    return [json_format.MessageToDict(v) for v in result.predict_result.predictions]


@pytest.mark.parametrize(("target", "task"), [("price", "regression"), ("grade", "classification")])
def test_categorical_boosting_trains_predicts_through_both_paths_and_exports(
    channel: grpc.Channel, target: str, task: str
) -> None:
    buffer = io.StringIO()
    _frame().to_csv(buffer, index=False)
    upload(channel, "zones", buffer.getvalue().encode())
    model_id = _train(channel, target)
    record, fmt, artifact = export(channel, model_id)
    assert (record.id, fmt) == (model_id, "mlgate-arrays-v1")
    exported = decode(Encoded(fmt, artifact), model_id, _FEATURES, DEFAULT_MAX_MODEL_BYTES)
    estimator = exported.steps[-1][1]
    assert estimator.is_categorical_.tolist() == _ZONE_IS_CATEGORICAL
    rows = _rows()
    expected = exported.predict(rows).tolist()
    assert _predicted(channel, model_id, rows) == expected
    infer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer
    response = infer(_infer_request(model_id, rows), timeout=60)
    if task == "regression":
        assert fp64_output(response).tolist() == expected
    else:
        proba = fp64_output(response, "predict_proba")
        assert np.allclose(proba, exported.predict_proba(rows))
