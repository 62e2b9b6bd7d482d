"""The shadow's arithmetic and conversions, without a gateway: outputs read from responses as
workers encode them, nearest-rank quantiles, class agreement across label types, and a Predict's
rows as the ModelInferRequest its shadow is sent."""

from __future__ import annotations

import math
import struct

import pytest
from google.protobuf import struct_pb2

from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.tensors import check_request
from mlgate.v1 import jobs_pb2, models_pb2
from server.predict_serving import infer_request_of
from server.shadow_stats import Comparison, predictions_of, quantiles


def _raw(datatype: str, data: bytes, count: int) -> bytes:
    response = pb.ModelInferResponse()
    response.outputs.add(name="predict", datatype=datatype, shape=[count])
    response.raw_output_contents.append(data)
    return response.SerializeToString()


def test_outputs_are_read_as_workers_encode_them() -> None:
    assert predictions_of(_raw("FP64", struct.pack("<3d", 1.5, -2.0, 3.25), 3)) == [1.5, -2.0, 3.25]
    assert predictions_of(_raw("INT64", struct.pack("<2q", 7, -1), 2)) == [7, -1]
    assert predictions_of(_raw("BOOL", b"\x01\x00", 2)) == [True, False]
    labels = b"".join(len(s).to_bytes(4, "little") + s for s in (b"setosa", b"", b"virginica"))
    assert predictions_of(_raw("BYTES", labels, 3)) == ["setosa", "", "virginica"]
    typed = pb.ModelInferResponse()
    typed.outputs.add(name="predict", datatype="FP64", shape=[2]).contents.fp64_contents.extend(
        [0.5, 1.5]
    )
    assert predictions_of(typed.SerializeToString()) == [0.5, 1.5]
    probabilities_only = pb.ModelInferResponse()
    probabilities_only.outputs.add(name="predict_proba", datatype="FP64", shape=[1, 2])
    assert predictions_of(probabilities_only.SerializeToString()) is None


def test_quantiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert quantiles(values) == [50.0, 90.0, 99.0]
    assert quantiles([3.0]) == [3.0, 3.0, 3.0]
    assert quantiles([]) == [0.0, 0.0, 0.0]


def test_classes_agree_across_label_types_and_differences_are_absolute() -> None:
    classes = Comparison("m", "prod", 2, "classification")
    # A Predict result's labels are numbers (1.0); ModelInfer's INT64 labels are ints (1).
    classes.compare([1.0, 0.0, 2.0, "a"], [1, 1, 2, "a"], 0.01, 0.02)
    summary = classes.summary()
    assert (summary.rows, summary.agreement) == (4, 0.75)
    numbers = Comparison("m", "prod", 2, "regression")
    numbers.compare([1.0, 5.0], [3.0, 4.0], 0.01, 0.02)
    numbers.compare([10.0], [10.0], 0.03, 0.04)
    summary = numbers.summary()
    assert summary.rows == 3 and summary.mean_abs_diff == pytest.approx(1.0)
    assert (summary.abs_diff.p50, summary.abs_diff.p99) == (1.0, 2.0)
    assert summary.primary_latency.p50 == 0.01 and summary.shadow_latency.p99 == 0.04


def _record() -> models_pb2.Model:
    return models_pb2.Model(
        id="mdl_" + "0" * 32,
        features=[
            models_pb2.Feature(name="size", dtype="numeric"),
            models_pb2.Feature(name="rooms", dtype="integer"),
            models_pb2.Feature(name="colour", dtype="string"),
            models_pb2.Feature(name="garden", dtype="boolean"),
        ],
        imputation=models_pb2.Imputation(strategy="median"),
    )


def test_a_predicts_rows_become_one_tensor_per_feature_blanks_kept() -> None:
    first, second = struct_pb2.Struct(), struct_pb2.Struct()
    first.update({"size": 50.0, "rooms": 3, "colour": "red", "garden": True})
    second.update({"size": None, "rooms": 2, "colour": "", "garden": False})
    rows = [first, second]
    data = infer_request_of(jobs_pb2.PredictRequest(rows=rows), _record())
    request = pb.ModelInferRequest.FromString(data)
    tensors = {t.name: t for t in request.inputs}
    assert list(tensors) == ["size", "rooms", "colour", "garden"]
    size = list(tensors["size"].contents.fp64_contents)
    assert size[0] == 50.0 and math.isnan(size[1])
    assert list(tensors["rooms"].contents.fp64_contents) == [3.0, 2.0]
    assert list(tensors["colour"].contents.bytes_contents) == [b"red", b""]
    assert list(tensors["garden"].contents.bytes_contents) == [b"true", b"false"]
    assert check_request(request, _record()) == 2


def test_a_predicts_columns_become_tensors_and_a_column_left_out_is_not_sent() -> None:
    predict = jobs_pb2.PredictRequest(
        columns=[
            jobs_pb2.FeatureColumn(name="size", doubles=jobs_pb2.DoubleValues(values=[1.0, 2.0])),
            jobs_pb2.FeatureColumn(name="rooms", int64s=jobs_pb2.Int64Values(values=[4, 5])),
            jobs_pb2.FeatureColumn(name="garden", bools=jobs_pb2.BoolValues(values=[True, False])),
        ]
    )
    request = pb.ModelInferRequest.FromString(infer_request_of(predict, _record()))
    tensors = {t.name: t for t in request.inputs}
    assert list(tensors) == ["size", "rooms", "garden"]
    assert list(tensors["rooms"].contents.fp64_contents) == [4.0, 5.0]
    assert list(tensors["garden"].contents.bytes_contents) == [b"true", b"false"]
    assert [list(t.shape) for t in request.inputs] == [[2], [2], [2]]
