"""Drives a gateway with the unmodified ``tritonclient[grpc]``, in a process of its own.

tritonclient registers its own copy of the ``inference`` protobuf package, which cannot share a
process with mlgate's: so tests run this module as a script and read what it prints (JSON).

    python -m tests.support.triton_client ADDRESS REGRESSOR_ID CLASSIFIER_ID
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as triton

from tests.support.samples import DIABETES_FEATURES, DOC_ROW, IRIS_ROW


def _matrix(row: dict[str, float], names: list[str]) -> triton.InferInput:
    values = np.array([[row[name] for name in names]], dtype=np.float64)
    tensor = triton.InferInput("input", list(values.shape), "FP64")
    tensor.set_data_from_numpy(values)
    return tensor


def run(address: str, regressor: str, classifier: str) -> dict[str, Any]:
    client = triton.InferenceServerClient(url=address)
    found: dict[str, Any] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(regressor),
        "unknown_ready": client.is_model_ready("no-such-model"),
        "metadata": client.get_model_metadata(regressor, as_json=True),
    }
    result = client.infer(regressor, [_matrix(DOC_ROW, DIABETES_FEATURES)])
    found["predict"] = result.as_numpy("predict").tolist()
    # One tensor per feature, two rows each: the README row and the same row halved.
    columns = []
    for name in DIABETES_FEATURES:
        tensor = triton.InferInput(name, [2], "FP64")
        tensor.set_data_from_numpy(np.array([DOC_ROW[name], DOC_ROW[name] / 2]))
        columns.append(tensor)
    found["predict_columns"] = client.infer(regressor, columns).as_numpy("predict").tolist()
    names = list(IRIS_ROW)
    outputs = [triton.InferRequestedOutput("predict"), triton.InferRequestedOutput("predict_proba")]
    result = client.infer(classifier, [_matrix(IRIS_ROW, names)], outputs=outputs)
    found["label"] = result.as_numpy("predict").tolist()
    found["proba"] = result.as_numpy("predict_proba").tolist()
    proba = result.get_output("predict_proba")
    found["classes"] = json.loads(proba.parameters["classes"].string_param)
    try:
        client.infer("mdl_" + "0" * 32, [_matrix(DOC_ROW, DIABETES_FEATURES)])
    except triton.InferenceServerException as exc:
        found["unknown_status"] = exc.status()
    return found


if __name__ == "__main__":
    print(json.dumps(run(*sys.argv[1:4])))
