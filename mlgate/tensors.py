"""What gateway and workers agree on about Open Inference Protocol tensors, without numpy.

A model's inputs are its features: either one tensor ``[N, F]`` of numbers, its columns in the
order of the model's features (what ``ModelMetadata`` lists), or one tensor ``[N]`` per feature,
named after it. ``check_request`` is the gateway's validation: names, datatypes, shapes and sizes,
each error naming the input to fix; the values themselves are checked by the worker, vectorized.
Inputs follow the rule of every prediction path (``mlgate.inputs``): a tensor that is not a
feature is ignored and the response's ``warnings`` parameter names it; a feature left out is blank
in every row, for a model that takes blanks (``mlgate.blanks``). Outputs are ``predict`` and, for
classifiers, ``predict_proba``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf import struct_pb2

from mlgate.blanks import blank_refused, takes_blanks
from mlgate.errors import InvalidField
from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.quoting import listing, quote
from mlgate.v1 import models_pb2

__all__ = [
    "DATATYPES",
    "FEATURE_DATATYPES",
    "FIRST_LINE",
    "MATRIX_DATATYPES",
    "PREDICT",
    "PREDICT_PROBA",
    "WARNINGS",
    "Datatype",
    "check_request",
    "class_labels",
    "feature_datatype",
    "label_datatype",
    "outputs_of",
]

PREDICT = "predict"
PREDICT_PROBA = "predict_proba"
#: A request parameter (int64): the line of a file that the request's row 0 came from, so errors
#: name lines, not rows (``mlgate predict --csv`` sends it).
FIRST_LINE = "first_line"
#: A response parameter: a JSON list of warnings about the request's inputs, as a prediction
#: job's ``PredictResult.warnings`` (what was ignored, unseen categories); absent when none.
WARNINGS = "warnings"


@dataclass(frozen=True)
class Datatype:
    """One tensor datatype: its element size in raw contents (0: variable, BYTES), the typed
    contents field that carries it, and its numpy dtype (little-endian)."""

    name: str
    itemsize: int
    field: str
    numpy: str


DATATYPES = {
    d.name: d
    for d in (
        Datatype("FP64", 8, "fp64_contents", "<f8"),
        Datatype("FP32", 4, "fp32_contents", "<f4"),
        Datatype("INT64", 8, "int64_contents", "<i8"),
        Datatype("INT32", 4, "int_contents", "<i4"),
        Datatype("BOOL", 1, "bool_contents", "|b1"),
        Datatype("BYTES", 0, "bytes_contents", "O"),
    )
}

_NUMBERS = ("FP64", "FP32", "INT64", "INT32")
#: What the one-tensor form [N, F] may be: numbers only.
MATRIX_DATATYPES = _NUMBERS
#: What a per-feature tensor may be, by the feature's dtype (the first is what metadata lists).
FEATURE_DATATYPES = {
    "numeric": _NUMBERS,
    "integer": ("INT64", *[d for d in _NUMBERS if d != "INT64"]),
    # BYTES: "true", "false" (any case) or "" for a blank, which a BOOL tensor cannot carry.
    "boolean": ("BOOL", "BYTES"),
    "string": ("BYTES",),
}


def feature_datatype(dtype: str) -> str:
    return FEATURE_DATATYPES[dtype][0]


def label_datatype(classes: Sequence[struct_pb2.Value]) -> str:
    """The datatype of a classifier's ``predict`` output, from the classes in its record."""
    kinds = {value.WhichOneof("kind") for value in classes}
    if kinds == {"string_value"}:
        return "BYTES"
    if kinds == {"bool_value"}:
        return "BOOL"
    if kinds == {"number_value"} and all(v.number_value.is_integer() for v in classes):
        return "INT64"
    return "FP64"


def class_labels(classes: Sequence[struct_pb2.Value]) -> list[str | bool | int | float]:
    """A classifier's classes as plain values of its label datatype (0, not 0.0, for INT64)."""
    datatype = label_datatype(classes)
    labels: list[str | bool | int | float] = []
    for value in classes:
        kind = value.WhichOneof("kind")
        if kind == "string_value":
            labels.append(value.string_value)
        elif kind == "bool_value":
            labels.append(value.bool_value)
        elif datatype == "INT64":
            labels.append(int(value.number_value))
        else:
            labels.append(value.number_value)
    return labels


def outputs_of(record: models_pb2.Model) -> list[tuple[str, str, list[int]]]:
    """The model's outputs as (name, datatype, shape); -1 is "any size"."""
    if not record.classes:
        return [(PREDICT, "FP64", [-1])]
    return [
        (PREDICT, label_datatype(record.classes), [-1]),
        (PREDICT_PROBA, "FP64", [-1, len(record.classes)]),
    ]


def _named(i: int, tensor: pb.ModelInferRequest.InferInputTensor) -> str:
    return f"inputs[{i}] ({quote(tensor.name, 40)})"


def _count(shape: Sequence[int]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total


def _check_size(request: pb.ModelInferRequest, i: int, datatype: Datatype, elements: int) -> None:
    tensor = request.inputs[i]
    if request.raw_input_contents:
        if datatype.itemsize == 0:
            return  # BYTES: the worker reads the length-prefixed elements
        size = len(request.raw_input_contents[i])
        if size != elements * datatype.itemsize:
            raise InvalidField(
                _named(i, tensor),
                f"raw contents are {size} bytes; shape {list(tensor.shape)} of "
                f"{datatype.name} needs {elements * datatype.itemsize}",
            )
        return
    got = len(getattr(tensor.contents, datatype.field))
    if got != elements:
        raise InvalidField(
            _named(i, tensor),
            f"contents.{datatype.field} has {got} values; shape {list(tensor.shape)} needs "
            f"{elements}",
        )


def _datatype(
    i: int, tensor: pb.ModelInferRequest.InferInputTensor, allowed: Sequence[str]
) -> Datatype:
    if tensor.datatype not in allowed:
        raise InvalidField(
            _named(i, tensor),
            f"datatype {quote(tensor.datatype, 20)} is not accepted here; use {' or '.join(allowed)}",
        )
    return DATATYPES[tensor.datatype]


def check_request(request: pb.ModelInferRequest, record: models_pb2.Model) -> int:
    """The number of rows ``request`` sends to the model ``record`` describes; raises
    InvalidField naming the input (or output) to fix."""
    inputs = request.inputs
    features = record.features
    if not inputs:
        raise InvalidField(
            "inputs",
            "is empty; send one tensor [N, F] or one tensor [N] per feature "
            "(ModelMetadata lists them)",
        )
    if request.raw_input_contents:
        if len(request.raw_input_contents) != len(inputs):
            raise InvalidField(
                "raw_input_contents",
                f"has {len(request.raw_input_contents)} entries for {len(inputs)} inputs; "
                "send one per input, in the order of inputs",
            )
        for i, tensor in enumerate(inputs):
            if tensor.HasField("contents"):
                raise InvalidField(
                    _named(i, tensor), "has contents as well as raw_input_contents: send one"
                )
    _check_outputs(request, record)
    if len(inputs) == 1 and len(inputs[0].shape) == 2:
        return _check_matrix(request, features)
    return _check_columns(request, record)


def _check_matrix(request: pb.ModelInferRequest, features: Sequence[models_pb2.Feature]) -> int:
    tensor = request.inputs[0]
    rows, columns = tensor.shape
    if rows < 1:
        raise InvalidField(_named(0, tensor), f"shape {list(tensor.shape)} has no rows")
    if columns != len(features):
        raise InvalidField(
            _named(0, tensor),
            f"shape {list(tensor.shape)} has {columns} columns; the model has {len(features)} "
            f"features: {listing(f.name for f in features)}",
        )
    others = [f.name for f in features if f.dtype not in ("numeric", "integer")]
    if others:
        raise InvalidField(
            _named(0, tensor),
            f"one tensor [N, F] carries numbers only, and {listing(others)} are not; "
            "send one tensor per feature (ModelMetadata lists them)",
        )
    datatype = _datatype(0, tensor, MATRIX_DATATYPES)
    _check_size(request, 0, datatype, rows * columns)
    return int(rows)


def _check_columns(request: pb.ModelInferRequest, record: models_pb2.Model) -> int:
    """Tensors that are not inputs of the model are ignored (the worker's response names them);
    a feature left out is blank in every row, for a model that takes blanks."""
    expected = {f.name: f.dtype for f in record.features}
    seen: set[str] = set()
    rows = -1
    for i, tensor in enumerate(request.inputs):
        if tensor.name not in expected:
            continue
        if tensor.name in seen:
            raise InvalidField(_named(i, tensor), "is sent twice")
        seen.add(tensor.name)
        shape = list(tensor.shape)
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] < 1:
            raise InvalidField(
                _named(i, tensor), f"shape {shape} is not [N] (one value per row, N ≥ 1)"
            )
        if rows == -1:
            rows = shape[0]
        elif shape[0] != rows:
            raise InvalidField(
                _named(i, tensor), f"has {shape[0]} rows where the inputs before it have {rows}"
            )
        datatype = _datatype(i, tensor, FEATURE_DATATYPES[expected[tensor.name]])
        _check_size(request, i, datatype, _count(shape))
    missing = [name for name in expected if name not in seen]
    if rows == -1:
        raise InvalidField(
            "inputs",
            f"none is an input of this model; its inputs are {listing(expected)} "
            "(or one tensor [N, F] of them all)",
        )
    if missing and not takes_blanks(record):
        raise blank_refused(
            f"inputs ({quote(missing[0], 40)})",
            record,
            f"is missing (a blank in every row; missing {listing(missing)})",
        )
    return rows


def _check_outputs(request: pb.ModelInferRequest, record: models_pb2.Model) -> None:
    names = [name for name, _datatype, _shape in outputs_of(record)]
    for i, output in enumerate(request.outputs):
        if output.name not in names:
            raise InvalidField(
                f"outputs[{i}] ({quote(output.name, 40)})",
                f"is not an output of this model; its outputs are {listing(names)}",
            )
