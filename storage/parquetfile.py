"""Uploaded Parquet files: checked and described with pyarrow, read into the frames training uses.

A Parquet file carries its column types, so nothing is guessed; what mlgate does is map them onto
its four dtypes, the same way on upload (``parse``, at the gateway) and on load (``read``,
``read_row_groups``, in the workers), so the schema a dataset is recorded with is the one its
frame has:

==========================================  ==============================================
Parquet (Arrow) type                        mlgate dtype, pandas column
==========================================  ==============================================
int8..int64, uint8..uint64                  integer (int64...), numeric (float64) if a
                                            value is missing, as in a CSV column with gaps
float16/32/64, decimal                      numeric (float64 for decimals)
bool                                        boolean; string (objects) if a value is missing,
                                            as in a CSV column
string, large_string                        string
dictionary (pandas' category)               string: values as text, one-hot encoded by
                                            training like every string column
date, time, timestamp                       string (ISO text)
a column of nothing but nulls               numeric (float64, all missing)
list, struct, map, binary, other            refused, naming the column
==========================================  ==============================================

pyarrow is imported inside the functions, which run in the workers and, for an upload, in a
child process of the gateway (``storage.parquet_check``): the gateway itself never loads pyarrow
(about 40 MB with numpy), nor decodes a file someone sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from mlgate.errors import InvalidField
from storage.csvfile import Parsed

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "MAGIC",
    "frame",
    "looks_like_parquet",
    "open_file",
    "parse",
    "read",
    "read_row_groups",
]

#: A Parquet file starts and ends with these bytes.
MAGIC = b"PAR1"
_BATCH_ROWS = 64 * 1024


def looks_like_parquet(source: BinaryIO) -> bool:
    """Whether ``source`` (read from where it is, and left there) is framed as Parquet: PAR1 at
    both ends, or at its start beside bytes no text holds (a truncated file, refused as Parquet
    rather than as odd CSV). A CSV whose header starts "PAR1," is still a CSV."""
    start = source.tell()
    head = source.read(512)
    end = source.seek(0, 2)
    source.seek(max(start, end - len(MAGIC)))
    tail = source.read(len(MAGIC))
    source.seek(start)
    if not head.startswith(MAGIC):
        return False
    return tail == MAGIC or any(byte < 9 or 13 < byte < 32 for byte in head)


def _kind(name: str, kind: pa.DataType) -> str:
    """How a column of this Arrow type is read: integer, numeric, boolean, string or null;
    InvalidField for a type mlgate does not read."""
    import pyarrow as pa  # the workers' import (see the module docstring)

    types = pa.types
    if types.is_integer(kind):
        return "integer"
    if types.is_floating(kind) or types.is_decimal(kind):
        return "numeric"
    if types.is_boolean(kind):
        return "boolean"
    if types.is_null(kind):
        return "null"
    if (
        types.is_string(kind)
        or types.is_large_string(kind)
        or types.is_dictionary(kind)
        or types.is_temporal(kind)
        or kind == pa.string_view()
    ):
        return "string"
    nested = types.is_nested(kind) or types.is_map(kind)
    what = "a nested column" if nested else "a column type mlgate does not read"
    raise InvalidField(
        "chunk",
        f"column {name!r} is {what} ({kind}); a dataset's columns hold numbers, booleans, text "
        "or categories: flatten it or drop it before uploading",
    )


def _check_names(names: Sequence[str]) -> None:
    if not names:
        raise InvalidField("chunk", "the Parquet file has no columns")
    seen: dict[str, int] = {}
    for i, name in enumerate(names, 1):
        if not str(name).strip():
            raise InvalidField("chunk", f"column {i} of the Parquet file has no name")
        if name in seen:
            raise InvalidField(
                "chunk", f"column name {name!r} appears twice (columns {seen[name]} and {i})"
            )
        seen[name] = i


def _normal(column: pa.ChunkedArray | pa.Array, kind: str) -> Any:
    """``column`` in the Arrow type its pandas column is made from."""
    import pyarrow as pa

    if kind == "string" and not pa.types.is_string(column.type):
        return column.cast(pa.string())
    if kind == "null" or (kind == "numeric" and not pa.types.is_floating(column.type)):
        return column.cast(pa.float64())
    return column


def _dtype(kind: str, missing: bool) -> str:
    if kind == "null":
        return "numeric"
    if kind == "integer" and missing:
        return "numeric"
    if kind == "boolean" and missing:
        return "string"
    return kind


def open_file(source: BinaryIO) -> Any:
    """A ``pyarrow.parquet.ParquetFile`` on ``source``; InvalidField if it is not Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(source)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidField("chunk", f"the file is not a readable Parquet file: {exc}") from None


def parse(source: BinaryIO) -> Parsed:
    """The checked Parquet file's description (its delimiter is empty), read whole in batches so
    a damaged page is found now, not by the first job. Raises InvalidField naming the column."""
    import pyarrow as pa

    parquet = open_file(source)
    try:
        schema = parquet.schema_arrow
    except (pa.ArrowException, ValueError) as exc:
        raise InvalidField("chunk", f"the Parquet file's schema cannot be read: {exc}") from None
    names = [str(name) for name in schema.names]
    _check_names(names)
    kinds = [_kind(field.name, field.type) for field in schema]
    missing = [False] * len(names)
    rows = 0
    try:
        for batch in parquet.iter_batches(batch_size=_BATCH_ROWS, use_threads=False):
            rows += batch.num_rows
            # Decoding each batch is the check; the casts a load makes (to text, to float64)
            # cannot fail on decoded values, so they are left to the load.
            for i in range(len(kinds)):
                missing[i] = missing[i] or batch.column(i).null_count > 0
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InvalidField("chunk", f"the Parquet file cannot be read: {exc}") from None
    if rows == 0:
        raise InvalidField("chunk", "the Parquet file has no rows; a dataset needs data rows")
    columns = [(n, _dtype(k, m)) for n, k, m in zip(names, kinds, missing, strict=True)]
    return Parsed(columns, rows, "")


def frame(table: pa.Table, dtypes: Sequence[str] | None = None) -> pd.DataFrame:
    """``table`` as the frame training reads: each column in its mlgate dtype's pandas form.
    ``dtypes`` (the recorded schema's) makes a slice of the file read as the whole file does,
    where one part of a column has no gaps and another has."""
    import pyarrow as pa

    kinds = [_kind(field.name, field.type) for field in table.schema]
    columns = [_normal(table.column(i), kind) for i, kind in enumerate(kinds)]
    normal = pa.Table.from_arrays(columns, names=[str(name) for name in table.schema.names])
    # ignore_metadata: pandas' own metadata would make an index of some columns; every stored
    # column is a column here, as its schema lists it.
    found = normal.to_pandas(ignore_metadata=True)
    if dtypes is not None:
        for name, kind, dtype in zip(found.columns, kinds, dtypes, strict=True):
            if dtype == "numeric" and kind == "integer":
                found[name] = found[name].astype("float64")
            elif dtype == "string" and kind == "boolean":
                found[name] = found[name].astype(object)
    return found


def read(source: BinaryIO) -> pd.DataFrame:
    """The whole Parquet file as a DataFrame (the workers' load)."""
    return frame(open_file(source).read(use_threads=False))


def read_row_groups(parquet: Any, groups: Sequence[int], dtypes: Sequence[str]) -> pd.DataFrame:
    """Row groups ``groups`` of an open ParquetFile, typed as the whole file (``dtypes``)."""
    return frame(parquet.read_row_groups(list(groups), use_threads=False), dtypes)
