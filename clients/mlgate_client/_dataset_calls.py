"""MLGateClient's dataset downloads."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import grpc

from mlgate.v1 import datasets_pb2
from mlgate_client.errors import MLGateError, from_rpc_error
from mlgate_client.results import Dataset

if TYPE_CHECKING:
    from mlgate.v1 import datasets_pb2_grpc

__all__ = ["DatasetCalls"]

Resp = TypeVar("Resp")


class DatasetCalls:
    """Mixed into MLGateClient, which provides the stub, the timeout and ``_unary``."""

    if TYPE_CHECKING:
        _datasets: datasets_pb2_grpc.DatasetServiceStub
        _timeout: float | None

        def _unary(self, method: Callable[..., Resp], request: Any) -> Resp: ...

    def download_dataset(
        self, dataset_id: str, target: str | os.PathLike[str] | IO[bytes]
    ) -> Dataset:
        """Write the dataset's file into ``target`` and return its record: the stored CSV or
        Parquet file (``Dataset.format`` says which), or a built-in dataset's CSV rendering. The
        bytes are checked against the record's sha256 as they arrive (a mismatch raises
        DATA_LOSS). A path is written whole or not at all: into a temporary file beside it,
        renamed once checked."""
        if not isinstance(target, (str, os.PathLike)):
            return self._download_into(dataset_id, target)
        path = Path(target)
        partial = path.with_name(f".{path.name}.part")
        try:
            with partial.open("wb") as file:
                dataset = self._download_into(dataset_id, file)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return dataset

    def _download_into(self, dataset_id: str, target: IO[bytes]) -> Dataset:
        request = datasets_pb2.DownloadDatasetRequest(dataset_id=dataset_id)
        # grpc-stubs types the streaming call loosely: it is an iterator with cancel().
        stream: Any = self._datasets.DownloadDataset(request, timeout=self._timeout)
        digest = hashlib.sha256()
        record: datasets_pb2.Dataset | None = None
        try:
            for response in stream:
                if response.HasField("dataset"):
                    record = response.dataset
                digest.update(response.chunk)
                target.write(response.chunk)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            stream.cancel()
        if record is None:
            raise MLGateError("the download ended before the dataset's record", "INTERNAL")
        if digest.hexdigest() != record.sha256:
            raise MLGateError(
                f"the downloaded data does not match its sha256 {record.sha256}", "DATA_LOSS"
            )
        return Dataset.from_proto(record)
