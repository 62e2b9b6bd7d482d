"""Datasets: the built-in ones scikit-learn ships, and uploaded CSVs kept in the object store.

An uploaded dataset is two objects: ``datasets/<id>.csv`` (the bytes as sent) and
``datasets/<id>.json`` (its schema, written last, so a dataset is visible only once complete).
"""

from __future__ import annotations

import functools
import tempfile
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

import pandas as pd
from google.protobuf import json_format
from sklearn import datasets as sk_datasets

from mlgate.errors import AlreadyExists, InvalidArgument, NotFound
from mlgate.ids import BUILTIN_DATASETS, check_dataset_id
from mlgate.v1 import datasets_pb2
from storage.base import ObjectStore
from storage.errors import ObjectNotFound

__all__ = ["DatasetCatalog", "dtype_name"]

MAX_UPLOAD_BYTES = 1024 * 1024 * 1024

_LOADERS: dict[str, Callable[..., Any]] = {
    "diabetes": sk_datasets.load_diabetes,
    "iris": sk_datasets.load_iris,
    "wine": sk_datasets.load_wine,
    "breast_cancer": sk_datasets.load_breast_cancer,
}


def dtype_name(dtype: Any) -> str:
    """mlgate's name for a pandas dtype: numeric, integer, boolean or string."""
    kind = getattr(dtype, "kind", "O")
    if kind == "b":
        return "boolean"
    if kind in "iu":
        return "integer"
    if kind == "f":
        return "numeric"
    return "string"


@functools.cache
def _builtin_frame(dataset_id: str) -> pd.DataFrame:
    frame: pd.DataFrame = _LOADERS[dataset_id](as_frame=True).frame
    return frame


def _describe(
    dataset_id: str, frame: pd.DataFrame, *, builtin: bool, size: int
) -> datasets_pb2.Dataset:
    dataset = datasets_pb2.Dataset(id=dataset_id, rows=len(frame), builtin=builtin, size_bytes=size)
    for name, dtype in frame.dtypes.items():
        dataset.columns.add(name=str(name), dtype=dtype_name(dtype))
    return dataset


def _csv_key(dataset_id: str) -> str:
    return f"datasets/{dataset_id}.csv"


def _meta_key(dataset_id: str) -> str:
    return f"datasets/{dataset_id}.json"


class DatasetCatalog:
    """Finds, describes, loads and stores datasets by id."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._lock = threading.Lock()

    def describe(self, dataset_id: str) -> datasets_pb2.Dataset:
        """The dataset's schema; raises NotFound."""
        check_dataset_id(dataset_id)
        if dataset_id in BUILTIN_DATASETS:
            frame = _builtin_frame(dataset_id)
            return _describe(dataset_id, frame, builtin=True, size=0)
        try:
            raw = self._store.get(_meta_key(dataset_id))
        except ObjectNotFound:
            raise NotFound(
                f"dataset {dataset_id!r} does not exist; built-in datasets are "
                f"{', '.join(BUILTIN_DATASETS)}, others must be uploaded first"
            ) from None
        return json_format.Parse(raw, datasets_pb2.Dataset())

    def list(self) -> list[datasets_pb2.Dataset]:
        """Built-in datasets first, then uploaded ones by id."""
        found = [self.describe(name) for name in BUILTIN_DATASETS]
        uploaded = sorted(
            key.removeprefix("datasets/").removesuffix(".json")
            for key in self._store.list("datasets/")
            if key.endswith(".json")
        )
        for dataset_id in uploaded:
            try:
                found.append(self.describe(dataset_id))
            except NotFound:
                continue  # deleted between list and read
        return found

    def load(self, dataset_id: str) -> pd.DataFrame:
        """The dataset as a DataFrame; raises NotFound."""
        check_dataset_id(dataset_id)
        if dataset_id in BUILTIN_DATASETS:
            return _builtin_frame(dataset_id).copy()
        self.describe(dataset_id)
        with tempfile.TemporaryFile() as spool:
            try:
                self._store.download(_csv_key(dataset_id), spool)
            except ObjectNotFound:
                raise NotFound(f"dataset {dataset_id!r} has no data") from None
            spool.seek(0)
            return pd.read_csv(spool)

    def upload_file(self, dataset_id: str, source: BinaryIO) -> datasets_pb2.Dataset:
        """Check that ``source`` is a usable CSV, then store it and its schema."""
        check_dataset_id(dataset_id)
        if dataset_id in BUILTIN_DATASETS:
            raise AlreadyExists(f"dataset {dataset_id!r} is built in and cannot be replaced")
        start = source.tell()
        frame = _parse_csv(source)
        size = source.tell() - start
        dataset = _describe(dataset_id, frame, builtin=False, size=size)
        dataset.create_time.GetCurrentTime()
        source.seek(start)
        with self._lock:
            self._store.put_stream(_csv_key(dataset_id), source)
            self._store.put(_meta_key(dataset_id), json_format.MessageToJson(dataset).encode())
        return dataset


def _parse_csv(source: BinaryIO) -> pd.DataFrame:
    if not source.read(1):
        raise InvalidArgument("chunk", "the upload is empty; send a CSV with a header row")
    source.seek(0)
    try:
        frame = pd.read_csv(source)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InvalidArgument("chunk", f"not a valid CSV file: {exc}") from None
    if frame.empty or len(frame.columns) < 2:
        raise InvalidArgument("chunk", "a dataset needs a header row, data rows and 2+ columns")
    names = [str(c) for c in frame.columns]
    if any(name.startswith("Unnamed:") for name in names):
        raise InvalidArgument("chunk", "every column needs a name in the header row")
    if len(set(names)) != len(names):
        raise InvalidArgument("chunk", "column names must be unique")
    return frame
