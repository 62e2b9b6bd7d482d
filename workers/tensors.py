"""The evaluator's input (``Inputs``) from Open Inference Protocol tensors and from prediction
jobs' columns or rows, without per-value Python work for numbers; and output arrays as tensors.

The gateway checked names, datatypes, shapes and sizes (``mlgate.tensors.check_request``); what
is left here is reading the bytes (``np.frombuffer`` on raw contents, one conversion of a typed
repeated field) and checking the values, vectorized. A model whose features are all numbers gets
one float64 matrix ``[N, F]``; any other gets columns by feature name, for its encoder. A job's
rows become columns here, once, so rows, columns and tensors all take one evaluation.

BYTES elements travel as UTF-8, in raw contents each after its 4-byte little-endian length:
``unpack_bytes`` and ``pack_bytes`` are the worker's one reader and writer of that framing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from mlgate.blanks import blank_refused, takes_blanks
from mlgate.columns import BOOLEAN_TEXT, column_values
from mlgate.errors import InvalidField
from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.quoting import quote
from mlgate.tensors import DATATYPES, FIRST_LINE
from mlgate.v1 import jobs_pb2, models_pb2

__all__ = [
    "Columns",
    "Inputs",
    "column_of",
    "concatenate",
    "decode",
    "from_columns",
    "from_rows",
    "numeric_only",
    "pack_bytes",
    "raw_contents",
    "row_namer",
    "typed_contents",
    "unpack_bytes",
]

Columns = dict[str, np.ndarray]
#: A float64 matrix [N, F] (numeric models) or columns by feature name (the others).
Inputs = np.ndarray | Columns

# scikit-learn's trees read inputs as float32 and refuse what overflows it: one bound for all.
_MAX_MAGNITUDE = float(np.finfo(np.float32).max)
_UNREADABLE = object()


def numeric_only(features: Sequence[models_pb2.Feature]) -> bool:
    return all(f.dtype in ("numeric", "integer") for f in features)


def _name(i: int, tensor: pb.ModelInferRequest.InferInputTensor) -> str:
    return f"inputs[{i}] ({quote(tensor.name, 40)})"


def unpack_bytes(raw: bytes, count: int, field: str) -> list[bytes]:
    """The elements of raw BYTES contents: each a 4-byte little-endian length, then the bytes."""
    out: list[bytes] = []
    pos = 0
    while pos < len(raw) and len(out) < count:
        size = int.from_bytes(raw[pos : pos + 4], "little")
        out.append(raw[pos + 4 : pos + 4 + size])
        pos += 4 + size
    if len(out) != count or pos != len(raw):
        raise InvalidField(
            field, f"raw BYTES contents do not hold exactly {count} length-prefixed elements"
        )
    return out


def _array(request: pb.ModelInferRequest, i: int) -> np.ndarray:
    tensor = request.inputs[i]
    datatype = DATATYPES[tensor.datatype]
    count = 1
    for dim in tensor.shape:
        count *= dim
    if datatype.name == "BYTES":
        values = (
            unpack_bytes(request.raw_input_contents[i], count, _name(i, tensor))
            if request.raw_input_contents
            else list(tensor.contents.bytes_contents)
        )
        try:
            return np.array([v.decode() for v in values], dtype=object)
        except UnicodeDecodeError:
            raise InvalidField(_name(i, tensor), "holds bytes that are not UTF-8 text") from None
    if request.raw_input_contents:
        raw = request.raw_input_contents[i]
        if datatype.name == "BOOL":
            _check_bools(raw, i, tensor)
        array = np.frombuffer(raw, dtype=datatype.numpy)
    else:
        typed = getattr(tensor.contents, datatype.field)
        # One pass, no list of Python values beside the array.
        array = np.fromiter(typed, dtype=datatype.numpy, count=len(typed))
    if array.size != count:
        raise InvalidField(_name(i, tensor), f"holds {array.size} values for shape {count}")
    return array


def _check_bools(raw: bytes, i: int, tensor: pb.ModelInferRequest.InferInputTensor) -> None:
    """Raw BOOL elements are one byte each, 0 or 1: numpy would read any other byte as a bool
    that is neither (and compares unequal to both)."""
    bad = np.flatnonzero(np.frombuffer(raw, dtype=np.uint8) > 1)
    if bad.size:
        raise InvalidField(
            _name(i, tensor),
            f"raw BOOL contents hold byte {raw[bad[0]]} at element {bad[0]}; "
            "each element is one byte, 0 (false) or 1 (true)",
        )


def _check_numbers(values: np.ndarray, where: Any, record: models_pb2.Model) -> None:
    """Raise naming the first value that is not finite or beyond float32 (NaN, a blank, only for
    a model that takes none); ``where(row, col)`` names it."""
    bad = ~np.isfinite(values) | (np.abs(values) > _MAX_MAGNITUDE)
    if bad.any() and takes_blanks(record):
        bad &= ~np.isnan(values)
    if bad.any():
        position = tuple(int(p) for p in np.argwhere(bad)[0])
        value = float(values[position])
        field, detail = where(*position) if values.ndim == 2 else where(position[0], 0)
        if np.isnan(value):
            raise blank_refused(field, record, f"{detail} is blank (NaN)")
        raise InvalidField(
            field,
            f"{detail}: {value!r} is not a finite number within ±{_MAX_MAGNITUDE:.3g}",
        )


def row_namer(request: pb.ModelInferRequest) -> Callable[[int], str]:
    """How errors name a row: ``row 3``, or with the request's ``first_line`` parameter (the
    file line its row 0 came from, as ``mlgate predict --csv`` sends it) ``line 7``."""
    given = request.parameters.get(FIRST_LINE)
    if given is None or given.WhichOneof("parameter_choice") != "int64_param":
        return lambda r: f"row {r}"
    first = given.int64_param
    return lambda r: f"line {first + r}"


def _booleans(texts: Sequence[str], field: str, row: Callable[[int], str]) -> np.ndarray:
    """A boolean feature sent as text: true, false (any case) or "" for a blank (NaN)."""
    found: np.ndarray = np.empty(len(texts), dtype=object)
    for r, text in enumerate(texts):
        value = BOOLEAN_TEXT.get(text.lower(), _UNREADABLE)
        if value is _UNREADABLE:
            raise InvalidField(
                field, f"{row(r)}: {quote(text, 40)} is not true, false or empty (a blank)"
            )
        found[r] = np.nan if value is None else value
    return _compact_booleans(found)


def _compact_booleans(values: np.ndarray) -> np.ndarray:
    """A bool array when nothing is blank; else the object array, blanks as NaN."""
    if all(isinstance(v, bool) for v in values.tolist()):
        return values.astype(bool)
    return values


def _texts(values: np.ndarray) -> np.ndarray:
    """A string feature's values, blanks (None, empty strings) as NaN, as scikit-learn reads
    blanks."""
    blank = np.fromiter((v is None or v == "" for v in values.tolist()), bool, len(values))
    if blank.any():
        values = values.copy()
        values[blank] = np.nan
    return values


def _blank_refused_in(
    column: np.ndarray, field: str, row: Callable[[int], str], record: models_pb2.Model
) -> None:
    if takes_blanks(record):
        return
    blank = np.flatnonzero(column != column)  # NaN: the only value unequal to itself
    if blank.size:
        raise blank_refused(field, record, f"{row(int(blank[0]))} is blank")


def decode(request: pb.ModelInferRequest, record: models_pb2.Model) -> Inputs:
    """The request's rows as the model's evaluator takes them, blanks as NaN (tensors that are
    not inputs ignored, a feature left out blank in every row); raises InvalidField."""
    features = record.features
    row = row_namer(request)
    if len(request.inputs) == 1 and len(request.inputs[0].shape) == 2:
        tensor = request.inputs[0]
        rows, width = tensor.shape
        matrix = _array(request, 0).astype(np.float64, copy=False).reshape(rows, width)
        _check_numbers(
            matrix,
            lambda r, c: (_name(0, tensor), f"{row(r)}, column {c} ({features[c].name})"),
            record,
        )
        return matrix
    by_name = {tensor.name: i for i, tensor in enumerate(request.inputs)}
    sent = [request.inputs[by_name[f.name]] for f in features if f.name in by_name]
    if not sent:
        raise InvalidField("inputs", "none is an input of this model (ModelMetadata lists them)")
    rows = sent[0].shape[0]
    columns: Columns = {}
    for feature in features:
        i = by_name.get(feature.name, -1)
        if i < 0:  # left out: blank in every row (the gateway checked the model takes that)
            blank = np.full(rows, np.nan, dtype=np.float64 if _numeric(feature) else object)
            columns[feature.name] = blank
            continue
        field = _name(i, request.inputs[i])
        column = _array(request, i)
        if _numeric(feature):
            column = column.astype(np.float64, copy=False)
            _check_numbers(column, lambda r, _c, f=field: (f, row(r)), record)
        else:
            if column.dtype == object and feature.dtype == "boolean":
                column = _booleans(column.tolist(), field, row)
            elif feature.dtype == "string":
                column = _texts(column)
            _blank_refused_in(column, field, row, record)
        columns[feature.name] = column
    if numeric_only(features):
        return np.column_stack([columns[f.name] for f in features])
    return columns


def concatenate(parts: Sequence[Inputs]) -> Inputs:
    """The rows of several requests, in order, as one evaluation's input."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    if isinstance(first, np.ndarray):
        return np.concatenate([part for part in parts if isinstance(part, np.ndarray)])
    return {
        name: np.concatenate([part[name] for part in parts if isinstance(part, dict)])
        for name in first
    }


def from_columns(columns: Sequence[jobs_pb2.FeatureColumn], record: models_pb2.Model) -> Inputs:
    """A prediction job's columns (checked by ``mlgate.columns.check_columns``) as the model's
    evaluator takes them: numbers are read as one array each, not value by value; a feature
    left out is blank in every row."""
    by_name = {column.name: column for column in columns}
    count = len(column_values(next(c for c in columns if c.name in _names(record))))
    values = [_values_of(by_name.get(f.name), f, count) for f in record.features]
    return _inputs(record.features, values)


def _names(record: models_pb2.Model) -> set[str]:
    return {f.name for f in record.features}


def _values_of(
    column: jobs_pb2.FeatureColumn | None, feature: models_pb2.Feature, count: int
) -> Sequence[Any] | np.ndarray:
    if column is None:
        return [None] * count
    kind = column.WhichOneof("values")
    if feature.dtype == "boolean" and kind == "strings":
        return [BOOLEAN_TEXT[text.lower()] for text in column.strings.values]
    if kind == "bools":
        return np.asarray(column.bools.values, dtype=bool)  # no blanks: read whole
    return column_values(column)


def from_rows(rows: Sequence[Mapping[str, Any]], record: models_pb2.Model) -> Inputs:
    """A prediction job's rows (checked by ``mlgate.inputs.check_rows``) as the model's evaluator
    takes them: turned into columns (a key left out a blank), then read as ``from_columns``
    reads those."""
    return _inputs(record.features, [[row.get(f.name) for row in rows] for f in record.features])


def _numeric(feature: models_pb2.Feature) -> bool:
    return feature.dtype in ("numeric", "integer")


def _inputs(
    features: Sequence[models_pb2.Feature], values: Sequence[Sequence[Any] | np.ndarray]
) -> Inputs:
    """``values`` holds each feature's values, in the order of ``features``; blanks (None, NaN,
    and empty strings for string and boolean features) become NaN."""
    if numeric_only(features):
        matrix = np.empty((len(values[0]), len(features)), dtype=np.float64)
        for c, column in enumerate(values):
            # None reads as NaN.
            matrix[:, c] = np.asarray(column, dtype=np.float64)
        return matrix
    inputs: Columns = {}
    for feature, column in zip(features, values, strict=True):
        if _numeric(feature):
            inputs[feature.name] = np.asarray(column, dtype=np.float64)
        elif isinstance(column, np.ndarray) and column.dtype == bool:
            inputs[feature.name] = column
        elif feature.dtype == "boolean":
            found: np.ndarray = np.empty(len(column), dtype=object)
            found[:] = [np.nan if v is None or v == "" else v for v in column]
            inputs[feature.name] = _compact_booleans(found)
        else:
            inputs[feature.name] = _texts(np.array(list(column), dtype=object))
    return inputs


def column_of(inputs: Inputs, record: models_pb2.Model, name: str) -> list[Any]:
    """One feature's values, a plain Python value per row."""
    names = [f.name for f in record.features]
    column = inputs[:, names.index(name)] if isinstance(inputs, np.ndarray) else inputs[name]
    values: list[Any] = column.tolist()
    return values


def _encoded(values: np.ndarray) -> list[bytes]:
    return [str(value).encode() for value in values.tolist()]


def pack_bytes(elements: Sequence[bytes]) -> bytes:
    """Raw BYTES contents: each element after its 4-byte little-endian length."""
    return b"".join(len(data).to_bytes(4, "little") + data for data in elements)


def raw_contents(values: np.ndarray, datatype: str) -> bytes:
    """An output array as a tensor's raw contents."""
    if datatype == "BYTES":
        return pack_bytes(_encoded(values))
    return np.ascontiguousarray(values, dtype=DATATYPES[datatype].numpy).tobytes()


def typed_contents(values: np.ndarray, datatype: str) -> list[Any]:
    """An output array as the values of a tensor's typed contents field."""
    if datatype == "BYTES":
        return _encoded(values)
    typed: list[Any] = values.astype(DATATYPES[datatype].numpy, copy=False).ravel().tolist()
    return typed
