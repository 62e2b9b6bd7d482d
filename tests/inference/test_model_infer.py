"""ModelInfer on the embedded system, through the generated Open Inference Protocol stub."""

from __future__ import annotations

import json
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY

from mlgate.oip import grpc_predict_v2_pb2 as pb
from tests.support.oip import (
    FEATURES,
    fp64_output,
    matrix_request,
    readme_matrix,
    seed_forest,
)


@pytest.fixture(scope="module")
def forest():
    return seed_forest()


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_one_row_equals_scikit_learn_exactly(stub, model_id, forest, raw) -> None:
    X = readme_matrix()
    response = stub.ModelInfer(matrix_request(model_id, X, raw=raw), timeout=30)
    (predicted,) = fp64_output(response)
    assert predicted == forest.predict(X)[0]
    assert repr(predicted).startswith("np.float64(208.64457800056")
    # Answered in the form it was asked: raw for raw, typed contents for typed.
    assert bool(response.raw_output_contents) == raw
    assert response.model_name == model_id
    assert response.parameters["model_id"].string_param == model_id
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("predict", "FP64", [1])
    ]


def test_ten_thousand_rows_equal_scikit_learn_exactly(stub, model_id, forest) -> None:
    X = np.random.default_rng(7).normal(0.0, 0.05, (10_000, len(FEATURES)))
    response = stub.ModelInfer(matrix_request(model_id, X, raw=True), timeout=60)
    np.testing.assert_array_equal(fp64_output(response), forest.predict(X))


def test_one_tensor_per_feature_in_any_order_and_datatype(stub, model_id, forest) -> None:
    X = np.random.default_rng(3).normal(0.0, 0.05, (5, len(FEATURES)))
    request = pb.ModelInferRequest(model_name=model_id, id="req-42")
    for j in reversed(range(len(FEATURES))):
        column = X[:, j]
        datatype = "FP32" if j % 2 else "FP64"
        request.inputs.add(name=FEATURES[j], datatype=datatype, shape=[5])
        request.raw_input_contents.append(column.astype("<f4" if j % 2 else "<f8").tobytes())
    response = stub.ModelInfer(request, timeout=30)
    assert response.id == "req-42"
    # FP32 columns are what the client sent: compare with the same values.
    sent = X.copy()
    for j in range(1, len(FEATURES), 2):
        sent[:, j] = X[:, j].astype(np.float32)
    np.testing.assert_array_equal(fp64_output(response), forest.predict(sent))


def test_a_registry_name_and_version_are_accepted(stub, model_id, forest) -> None:
    request = matrix_request("diabetes-rf", readme_matrix(), raw=True)
    request.model_version = "1"
    response = stub.ModelInfer(request, timeout=30)
    assert (response.model_name, response.model_version) == ("diabetes-rf", "1")
    assert response.parameters["model_id"].string_param == model_id
    assert fp64_output(response)[0] == forest.predict(readme_matrix())[0]


def _batches() -> float:
    return REGISTRY.get_sample_value("mlgate_inference_batch_rows_count") or 0.0


def test_concurrent_requests_are_batched_and_each_caller_gets_its_own_rows(
    stub, model_id, forest
) -> None:
    rng = np.random.default_rng(11)
    # Two large requests first: while they are evaluated, the lane has its two batches out, so
    # the small ones that follow wait together for the next batch instead of going one by one.
    inputs = [rng.normal(0.0, 0.05, (20_000, len(FEATURES))) for _ in range(2)]
    inputs += [rng.normal(0.0, 0.05, (1 + i % 3, len(FEATURES))) for i in range(24)]
    before = _batches()
    calls = [
        stub.ModelInfer.future(matrix_request(model_id, X, raw=True), timeout=60) for X in inputs
    ]
    for X, call in zip(inputs, calls, strict=True):
        np.testing.assert_array_equal(fp64_output(call.result()), forest.predict(X))
    evaluations = _batches() - before
    assert 2 < evaluations < len(inputs) - 2, f"{evaluations} evaluations for {len(inputs)} calls"


def _status(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    return caught.value.code(), caught.value.details() or ""


def _answered(code: str) -> float:
    return REGISTRY.get_sample_value("mlgate_inference_requests_total", {"code": code}) or 0.0


def test_unknown_model_is_not_found_and_calls_are_counted_by_status(stub, model_id) -> None:
    not_found, ok = _answered("NOT_FOUND"), _answered("OK")
    code, details = _status(
        stub.ModelInfer, matrix_request("mdl_" + "0" * 32, readme_matrix(), raw=True)
    )
    assert code == grpc.StatusCode.NOT_FOUND, details
    stub.ModelInfer(matrix_request(model_id, readme_matrix(), raw=True), timeout=30)
    assert (_answered("NOT_FOUND") - not_found, _answered("OK") - ok) == (1, 1)


def _bad(model_id: str, change) -> pb.ModelInferRequest:
    request = matrix_request(model_id, readme_matrix(), raw=True)
    change(request)
    return request


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda r: r.inputs[0].shape.__setitem__(1, 8), "inputs[0] ('input')"),
        (lambda r: setattr(r.inputs[0], "datatype", "BYTES"), "inputs[0] ('input')"),
        (lambda r: r.raw_input_contents.__setitem__(0, b"\0" * 8), "inputs[0] ('input')"),
        (lambda r: r.outputs.add(name="scores"), "outputs[0] ('scores')"),
        (lambda r: r.inputs.add(name="extra", datatype="FP64", shape=[1]), "raw_input_contents"),
    ],
    ids=["shape", "datatype", "size", "output", "contents-count"],
)
def test_bad_tensors_are_invalid_argument_naming_what_to_fix(stub, model_id, change, named) -> None:
    code, details = _status(stub.ModelInfer, _bad(model_id, change))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith(named), details


def _columns(model_id: str, names: list[str]) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model_id)
    for name in names:
        request.inputs.add(name=name, datatype="FP64", shape=[1]).contents.fp64_contents.append(0.1)
    return request


def test_a_missing_input_is_named_and_an_unknown_one_ignored(stub, model_id) -> None:
    code, details = _status(stub.ModelInfer, _columns(model_id, FEATURES[:-1]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "'s6'" in details and "missing" in details
    # As on every path, what is not a feature is ignored, and the response says so.
    answered = stub.ModelInfer(_columns(model_id, [*FEATURES, "sex"]))
    assert json.loads(answered.parameters["warnings"].string_param) == [
        "ignored sex: not a feature of this model (its features: age, bmi, bp, s1, s2, s3, s4, "
        "s5, … and 1 more)"
    ]
    plain = stub.ModelInfer(_columns(model_id, FEATURES))
    assert answered.raw_output_contents == plain.raw_output_contents
    assert "warnings" not in plain.parameters


def test_values_that_are_not_finite_are_named_by_row(stub, model_id) -> None:
    X = np.zeros((3, len(FEATURES)))
    X[2, 4] = np.nan
    code, details = _status(stub.ModelInfer, matrix_request(model_id, X, raw=True))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("inputs[0] ('input'): row 2, column 4 (s2)"), details


def test_readiness_and_metadata(stub, model_id) -> None:
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name=model_id)).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="diabetes-rf", version="1")).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="no-such-model")).ready
    metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name="diabetes-rf"))
    assert metadata.versions == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        (name, "FP64", [-1]) for name in FEATURES
    ]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [
        ("predict", "FP64", [-1])
    ]
    assert stub.ServerMetadata(pb.ServerMetadataRequest()).name == "mlgate"


def test_string_features_travel_as_bytes_tensors(served, stub, tmp_path) -> None:
    from mlgate_client import MLGateClient
    from mlgate_client._inference_calls import encode_bytes
    from tests.support.samples import HOUSES_CSV

    path = tmp_path / "houses.csv"
    path.write_text(HOUSES_CSV)
    houses: list[dict[str, Any]] = [
        {"size": 20, "colour": "red"},
        {"size": 55, "colour": "blue"},
        {"size": 5, "colour": "green"},
    ]
    with MLGateClient(served[0].address, timeout=120) as client:
        client.upload_dataset("houses", path)
        model = client.train(
            "houses", "price", estimator="decision_tree", task="regression"
        ).model_id
        expected = client.predict(model, houses).predictions
    for raw in (True, False):
        request = pb.ModelInferRequest(model_name=model)
        size = request.inputs.add(name="size", datatype="INT64", shape=[3])
        colour = request.inputs.add(name="colour", datatype="BYTES", shape=[3])
        if raw:
            request.raw_input_contents.append(
                np.array([h["size"] for h in houses], "<i8").tobytes()
            )
            request.raw_input_contents.append(encode_bytes([h["colour"] for h in houses]))
        else:
            size.contents.int64_contents.extend(h["size"] for h in houses)
            colour.contents.bytes_contents.extend(h["colour"].encode() for h in houses)
        assert fp64_output(stub.ModelInfer(request, timeout=30)).tolist() == list(expected)
    matrix = matrix_request(model, np.zeros((1, 2)), raw=True)
    code, details = _status(stub.ModelInfer, matrix)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "colour are not" in details and "one tensor per feature" in details
