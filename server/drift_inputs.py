"""A served request's inputs as each feature's values, in plain Python, for the drift windows
(``server.drift``): read on the drift thread, never on the request's path.

Both serving paths are read as they arrived, already checked (``mlgate.tensors``,
``mlgate.inputs``): ModelInfer's tensors (one [N, F] tensor of numbers, or one [N] tensor per
feature; raw or typed contents) and a Predict job's rows (as ``mlgate.jobs.from_struct`` read
them) or columns. Only the sampled rows are read: ``rows`` is a ``range`` over the request's rows.
A value is returned as it came (a number, a bool, a str, or None for a blank or a feature the
request left out); ``server.drift`` bins it.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from mlgate.columns import column_values
from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.tensors import DATATYPES
from mlgate.v1 import jobs_pb2

__all__ = ["Rows", "Values", "infer_values", "predict_values"]

# The array typecode of each fixed-size datatype in raw contents (little-endian on the wire).
_TYPECODES = {"FP64": "d", "FP32": "f", "INT64": "q", "INT32": "i", "BOOL": "B"}
_SWAP = sys.byteorder != "little"

Values = dict[str, Sequence[Any]]


def _raw_numbers(raw: bytes, datatype: str) -> Sequence[Any]:
    numbers = array(_TYPECODES[datatype], raw)
    if _SWAP:
        numbers.byteswap()
    if datatype == "BOOL":
        return [bool(b) for b in numbers]
    return numbers


def _raw_bytes(raw: bytes, count: int) -> list[bytes]:
    """The first ``count`` elements of raw BYTES contents (each after a 4-byte length)."""
    found: list[bytes] = []
    at = 0
    while len(found) < count and at + 4 <= len(raw):
        size = int.from_bytes(raw[at : at + 4], "little")
        found.append(raw[at + 4 : at + 4 + size])
        at += 4 + size
    return found


def _texts(elements: Sequence[bytes]) -> list[str]:
    return [e.decode("utf-8", "replace") for e in elements]


def _tensor(request: pb.ModelInferRequest, i: int, rows: range) -> Sequence[Any]:
    tensor = request.inputs[i]
    datatype = tensor.datatype
    if request.raw_input_contents:
        raw = request.raw_input_contents[i]
        if datatype == "BYTES":
            return _texts(_raw_bytes(raw, rows.stop)[rows.start :: rows.step])
        return _raw_numbers(raw, datatype)[rows.start : rows.stop : rows.step]
    values: Sequence[Any] = getattr(tensor.contents, DATATYPES[datatype].field)
    picked = values[rows.start : rows.stop : rows.step]
    return _texts(picked) if datatype == "BYTES" else picked


class Rows(NamedTuple):
    """Rows of numbers as one row-major block, a value per feature in each (an [N, F] tensor's
    contents): requests in this form are joined before they are split by feature."""

    flat: Sequence[Any]


def infer_values(
    request: pb.ModelInferRequest, features: Sequence[str], rows: range
) -> Values | Rows:
    """The sampled ``rows`` of a checked ModelInfer request, per feature or as ``Rows``."""
    found: Values = {}
    inputs = request.inputs
    if len(inputs) == 1 and len(inputs[0].shape) == 2:
        width = len(features)
        tensor = inputs[0]
        if request.raw_input_contents:
            matrix = _raw_numbers(request.raw_input_contents[0], tensor.datatype)
        else:
            matrix = getattr(tensor.contents, DATATYPES[tensor.datatype].field)
        stop = rows.stop * width
        if rows.step == 1:
            return Rows(matrix[rows.start * width : stop])
        for column, name in enumerate(features):
            found[name] = matrix[rows.start * width + column : stop : rows.step * width]
        return found
    wanted = set(features)
    for i, tensor in enumerate(inputs):
        if tensor.name in wanted and tensor.name not in found:
            found[tensor.name] = _tensor(request, i, rows)
    return found


def predict_values(
    request: jobs_pb2.PredictRequest,
    rows_read: Sequence[Mapping[str, Any]],
    features: Sequence[str],
    rows: range,
) -> Values:
    """The sampled ``rows`` of a checked Predict request, per feature: from its rows as the
    gateway read them (``rows_read``), or from its columns."""
    found: Values = {}
    if request.columns:
        wanted = set(features)
        for column in request.columns:
            if column.name in wanted and column.name not in found:
                found[column.name] = column_values(column)[rows.start : rows.stop : rows.step]
        return found
    picked = rows_read[rows.start : rows.stop : rows.step]
    for name in features:
        found[name] = [row.get(name) for row in picked]
    return found
