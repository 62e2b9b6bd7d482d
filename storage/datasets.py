"""Datasets: the built-in ones scikit-learn ships, and uploaded CSVs kept in the object store.

An uploaded dataset is two objects: ``datasets/<id>.csv`` (the bytes as sent) and
``datasets/<id>.json`` (its schema and the sha256 of those bytes, written last, so a dataset is
visible only once complete). A built-in dataset's sha256 is that of its CSV rendering.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

import pandas as pd
from google.protobuf import json_format
from sklearn import datasets as sk_datasets

from mlgate.errors import AlreadyExists, FailedPrecondition, NotFound
from mlgate.ids import BUILTIN_DATASETS, check_dataset_id
from mlgate.v1 import datasets_pb2
from storage import csvfile
from storage.base import ObjectStore
from storage.errors import IntegrityError, ObjectNotFound

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


@functools.cache
def _builtin_digest(dataset_id: str) -> str:
    rendering = _builtin_frame(dataset_id).to_csv(index=False).encode()
    return hashlib.sha256(rendering).hexdigest()


def _digest(source: BinaryIO) -> str:
    """The sha256 of what ``source`` reads from where it is to its end; it is left there."""
    digest = hashlib.sha256()
    while piece := source.read(1024 * 1024):
        digest.update(piece)
    return digest.hexdigest()


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
            dataset = _describe(dataset_id, frame, builtin=True, size=0)
            dataset.sha256 = _builtin_digest(dataset_id)
            return dataset
        try:
            raw = self._store.get(_meta_key(dataset_id))
        except ObjectNotFound:
            raise NotFound(
                f"dataset {dataset_id!r} does not exist; built-in datasets are "
                f"{', '.join(BUILTIN_DATASETS)}, others must be uploaded first"
            ) from None
        except IntegrityError as exc:
            raise IntegrityError(f"dataset {dataset_id!r} has a corrupt schema: {exc}") from exc
        try:
            return json_format.Parse(raw, datasets_pb2.Dataset())
        except json_format.ParseError as exc:
            raise IntegrityError(
                f"dataset {dataset_id!r} has a corrupt schema: it is not the JSON mlgate writes"
            ) from exc

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
        return self.load_with_digest(dataset_id)[0]

    def load_with_digest(self, dataset_id: str) -> tuple[pd.DataFrame, str]:
        """The dataset as a DataFrame and the sha256 of the very bytes it was read from, which
        a model records as the data it was trained on; raises NotFound."""
        check_dataset_id(dataset_id)
        if dataset_id in BUILTIN_DATASETS:
            return _builtin_frame(dataset_id).copy(), _builtin_digest(dataset_id)
        dataset = self.describe(dataset_id)
        with tempfile.TemporaryFile() as spool:
            try:
                self._store.download(_csv_key(dataset_id), spool)
            except ObjectNotFound:
                raise NotFound(f"dataset {dataset_id!r} has no data") from None
            spool.seek(0)
            digest = _digest(spool)
            spool.seek(0)
            if not dataset.delimiter:  # uploaded before delimiters were recorded: read as then
                return pd.read_csv(spool), digest
            return csvfile.read(spool, dataset.delimiter), digest

    def upload_file(
        self, dataset_id: str, source: BinaryIO, *, replace: bool = False, delimiter: str = ""
    ) -> datasets_pb2.Dataset:
        """Check that ``source`` is a usable CSV, then store it and its schema. An existing
        dataset is ALREADY_EXISTS unless ``replace``: models trained on it keep its digest."""
        check_dataset_id(dataset_id)
        if dataset_id in BUILTIN_DATASETS:
            raise AlreadyExists(f"dataset {dataset_id!r} is built in and cannot be replaced")
        start = source.tell()
        frame, delimiter = csvfile.parse(source, delimiter)
        source.seek(0, 2)
        size = source.tell() - start
        dataset = _describe(dataset_id, frame, builtin=False, size=size)
        dataset.delimiter = delimiter
        dataset.create_time.GetCurrentTime()
        source.seek(start)
        dataset.sha256 = _digest(source)
        source.seek(start)
        with self._lock:
            if not replace:
                self.refuse_existing(dataset_id)
            self._store.put_stream(_csv_key(dataset_id), source)
            self._store.put(_meta_key(dataset_id), json_format.MessageToJson(dataset).encode())
        return dataset

    def refuse_existing(self, dataset_id: str) -> None:
        """Raise AlreadyExists if ``dataset_id`` is built in or uploaded."""
        if dataset_id in BUILTIN_DATASETS:
            raise AlreadyExists(f"dataset {dataset_id!r} is built in and cannot be replaced")
        if self._store.exists(_meta_key(check_dataset_id(dataset_id))):
            raise AlreadyExists(
                f"dataset {dataset_id!r} already exists; upload with replace to replace its "
                "data (models trained on it keep the digest of the data they were trained on)"
            )

    def delete(self, dataset_id: str) -> None:
        """Remove an uploaded dataset, its schema first so it disappears whole; raises NotFound,
        or FailedPrecondition for a built-in one."""
        check_dataset_id(dataset_id)
        if dataset_id in BUILTIN_DATASETS:
            raise FailedPrecondition(f"dataset {dataset_id!r} is built in and cannot be deleted")
        with self._lock:
            if not self._store.exists(_meta_key(dataset_id)):
                raise NotFound(f"dataset {dataset_id!r} does not exist")
            self._store.delete(_meta_key(dataset_id))
            self._store.delete(_csv_key(dataset_id))
