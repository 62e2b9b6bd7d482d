"""Columnar prediction input (``PredictRequest.columns``): the checks the gateway and workers share.

A column is one feature's values for every row, as one typed repeated field. The gateway checks
every value without numpy and without a Python step per value: a double's magnitude and whether
it is finite can be read from the top byte of its little-endian wire form, so one slice and one
``bytes.translate`` over the serialized column find any bad value, and only then is the column
scanned in Python to name the first one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from mlgate.blanks import MAX_MAGNITUDE, blank_refused, takes_blanks
from mlgate.errors import InvalidField
from mlgate.quoting import listing, quote
from mlgate.v1 import jobs_pb2, models_pb2

__all__ = [
    "BOOLEAN_TEXT",
    "TAKES",
    "check_columns",
    "column_field",
    "column_values",
    "row_count",
]

#: The typed fields each feature dtype takes, in the order messages list them. A boolean feature
#: takes strings too ("true", "false", any case, or "" for a blank), so a column can hold blanks.
TAKES: dict[str, tuple[str, ...]] = {
    "numeric": ("doubles", "int64s"),
    "integer": ("doubles", "int64s"),
    "boolean": ("bools", "strings"),
    "string": ("strings",),
}
#: How a boolean feature's text reads, blank included.
BOOLEAN_TEXT: dict[str, bool | None] = {"true": True, "false": False, "": None}

# Per byte: 0 if a double whose top byte (sign bit cleared) is this one is within ±MAX_MAGNITUDE,
# 2 if it is beyond it (or infinite or NaN, whose exponent bits are all ones), 1 if that byte
# alone cannot tell (0x47: from 2**113 up to just past MAX_MAGNITUDE; looked at in full).
_TOP = 0x47
_VERDICT = bytes(0 if b & 0x7F < _TOP else 1 if b & 0x7F == _TOP else 2 for b in range(256))


def column_field(i: int, column: jobs_pb2.FeatureColumn) -> str:
    return f"columns[{i}] ({quote(column.name, 40)})"


def column_values(column: jobs_pb2.FeatureColumn) -> Sequence[Any]:
    """The column's values (an empty sequence if it set none)."""
    kind = column.WhichOneof("values")
    if kind is None:
        return ()
    values: Sequence[Any] = getattr(column, kind).values
    return values


def row_count(request: jobs_pb2.PredictRequest) -> int:
    """How many rows the request holds, in whichever form it sent them (before any check)."""
    if request.rows:
        return len(request.rows)
    return max((len(column_values(c)) for c in request.columns), default=0)


def _doubles_ok(values: jobs_pb2.DoubleValues, count: int) -> bool:
    """Whether every value is finite and within ±MAX_MAGNITUDE, at C speed."""
    if not count:
        return True
    # Packed on the wire: a tag and a length, then 8 little-endian bytes per value.
    raw = values.SerializeToString()[-8 * count :]
    verdicts = raw[7::8].translate(_VERDICT)
    if b"\x02" in verdicts:
        return False
    if b"\x01" in verdicts:
        return all(abs(v) <= MAX_MAGNITUDE for v in values.values)
    return True


def _first_bad_double(
    field: str, values: Sequence[float], record: models_pb2.Model
) -> InvalidField | None:
    """The error for the first value that is not finite or beyond ±MAX_MAGNITUDE; NaN is a
    blank, refused only by a model that takes none."""
    blanks = takes_blanks(record)
    for j, value in enumerate(values):
        if math.isnan(value):
            if blanks:
                continue
            return blank_refused(f"{field}[{j}]", record, "is blank (NaN)")
        if not math.isfinite(value):
            return InvalidField(f"{field}[{j}]", f"must be a finite number, not {value!r}")
        if abs(value) > MAX_MAGNITUDE:
            return InvalidField(
                f"{field}[{j}]",
                f"{value!r} is out of range: numbers must be within ±{MAX_MAGNITUDE:.3g}",
            )
    return None


def _check_text(field: str, values: Sequence[str], dtype: str, record: models_pb2.Model) -> None:
    """A string column's blanks (empty strings), and a boolean feature's text."""
    if dtype == "boolean":
        for j, value in enumerate(values):
            if value.lower() not in BOOLEAN_TEXT:
                raise InvalidField(
                    f"{field}[{j}]",
                    f"is a boolean feature: send true, false or an empty string (a blank), "
                    f"not {quote(value, 40)}",
                )
    if not takes_blanks(record) and "" in values:
        raise blank_refused(
            f"{field}[{list(values).index('')}]", record, "is blank (an empty string)"
        )


def check_columns(columns: Sequence[jobs_pb2.FeatureColumn], record: models_pb2.Model) -> int:
    """The number of rows the columns hold; raises InvalidField naming the first bad column
    (repeated, of the wrong type or length; missing, for a model that takes no blanks) or value
    (infinite, beyond ±MAX_MAGNITUDE, or a blank the model cannot take). A column that is not a
    feature is ignored (the worker's result names it)."""
    if not columns:
        raise InvalidField("columns", "is empty; send one column per feature")
    expected = {f.name: f.dtype for f in record.features}
    seen: dict[str, int] = {}
    rows = -1
    first = -1
    for i, column in enumerate(columns):
        field = column_field(i, column)
        dtype = expected.get(column.name)
        if dtype is None:
            continue
        if column.name in seen:
            raise InvalidField(
                field, f"repeats columns[{seen[column.name]}]: send each feature once"
            )
        seen[column.name] = i
        kind = column.WhichOneof("values")
        takes = TAKES[dtype]
        if kind is None:
            raise InvalidField(field, f"has no values: set {' or '.join(takes)}")
        if kind not in takes:
            raise InvalidField(
                field, f"is a {dtype} feature: send its values as {' or '.join(takes)}, not {kind}"
            )
        count = len(column_values(column))
        if rows < 0:
            rows, first = count, i
        elif count != rows:
            raise InvalidField(
                field,
                f"has {count} values where {column_field(first, columns[first])} has {rows}: "
                "every column holds one value per row",
            )
        if kind == "doubles" and not _doubles_ok(column.doubles, count):
            bad = _first_bad_double(field, column.doubles.values, record)
            if bad is not None:
                raise bad
        elif kind == "strings":
            _check_text(field, column.strings.values, dtype, record)
    if rows < 0:
        raise InvalidField(
            "columns", f"none is a feature of this model; its features: {listing(expected)}"
        )
    missing = [name for name in expected if name not in seen]
    if missing and not takes_blanks(record):
        raise blank_refused(
            f"columns ({quote(missing[0], 40)})", record, "is missing (a blank in every row)"
        )
    if rows == 0:
        raise InvalidField("columns", "hold no values; send at least one row")
    return rows
