"""``DownloadDataset``: a dataset's record, then its stored bytes in chunks.

An uploaded dataset (or a scoring job's output) is sent as stored: its CSV or Parquet file,
spooled and checked against the record's sha256 before the first byte goes out, so a client never
receives data other than what the record describes. A built-in dataset is sent as its CSV
rendering, the bytes its sha256 is of; the gateway never imports scikit-learn or pandas, so the
rendering is made once per gateway and dataset in a child process (``python -m
storage.builtin_csv``) and kept (the four are 150 to 569 rows).

Who may: any token with the read role for a built-in dataset; an uploaded dataset's data is its
owner's, as a model's artifact is (``server.ownership``): its owner, ``admin`` or a ``+all``
token. Everyone with the read role still sees its record with GetDataset.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import tempfile
from collections.abc import AsyncIterator

from mlgate.errors import PermissionDenied, Unavailable
from mlgate.v1 import datasets_pb2
from server.auth import current_caller
from server.ownership import sees_details
from storage.datasets import DatasetCatalog
from storage.errors import IntegrityError

__all__ = ["CHUNK_BYTES", "DatasetDownloads"]

CHUNK_BYTES = 1024 * 1024
_RENDER_TIMEOUT = 120.0


def _check_may_download(dataset: datasets_pb2.Dataset) -> None:
    if dataset.builtin or sees_details(dataset.owner):
        return
    caller = current_caller()
    name = caller.name if caller is not None else ""
    whose = f"belongs to {dataset.owner!r}" if dataset.owner else "has no owner"
    raise PermissionDenied(
        f"downloading dataset {dataset.id!r} is for its owner, the admin role or a +all token: "
        f"it {whose}; token {name!r} may see its record (GetDataset) and train on it"
    )


class DatasetDownloads:
    """Streams datasets; keeps the built-in ones' renderings."""

    def __init__(self, catalog: DatasetCatalog) -> None:
        self._catalog = catalog
        self._rendered: dict[str, bytes] = {}
        self._rendering = asyncio.Lock()

    async def stream(self, dataset_id: str) -> AsyncIterator[datasets_pb2.DownloadDatasetResponse]:
        dataset = await asyncio.to_thread(self._catalog.describe, dataset_id)
        _check_may_download(dataset)
        if dataset.builtin:
            data = await self._builtin(dataset)
            yield datasets_pb2.DownloadDatasetResponse(dataset=dataset)
            for start in range(0, len(data), CHUNK_BYTES):
                yield datasets_pb2.DownloadDatasetResponse(chunk=data[start : start + CHUNK_BYTES])
            return
        with tempfile.TemporaryFile() as spool:
            digest = await asyncio.to_thread(self._catalog.download_data, dataset, spool)
            if digest != dataset.sha256:
                # Replaced between the record's read and the data's: the new record is the one
                # these bytes belong to, if they match it.
                dataset = await asyncio.to_thread(self._catalog.describe, dataset_id)
                _check_may_download(dataset)
                if digest != dataset.sha256:
                    raise IntegrityError(
                        f"dataset {dataset_id!r}: its stored data does not match the sha256 its "
                        "record holds; upload it again"
                    )
            spool.seek(0)
            yield datasets_pb2.DownloadDatasetResponse(dataset=dataset)
            while chunk := await asyncio.to_thread(spool.read, CHUNK_BYTES):
                yield datasets_pb2.DownloadDatasetResponse(chunk=chunk)

    async def _builtin(self, dataset: datasets_pb2.Dataset) -> bytes:
        async with self._rendering:
            found = self._rendered.get(dataset.id)
            if found is None:
                found = self._rendered[dataset.id] = await self._render(dataset)
            return found

    async def _render(self, dataset: datasets_pb2.Dataset) -> bytes:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "storage.builtin_csv",
            dataset.id,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(child.communicate(), _RENDER_TIMEOUT)
        except TimeoutError:
            child.kill()
            await child.wait()
            raise Unavailable(
                f"rendering built-in dataset {dataset.id!r} took over {_RENDER_TIMEOUT:.0f} s; "
                "try again"
            ) from None
        if child.returncode != 0:
            raise Unavailable(
                f"rendering built-in dataset {dataset.id!r} failed: "
                f"{err.decode(errors='replace').strip()[-300:]}"
            )
        if hashlib.sha256(out).hexdigest() != dataset.sha256:
            # scikit-learn on this host renders it otherwise than the table says (another
            # version): the bytes would not be the ones models record.
            raise IntegrityError(
                f"built-in dataset {dataset.id!r} renders with another sha256 on this gateway "
                "than its record's; the installed scikit-learn differs from the one mlgate's "
                "tables were made with"
            )
        return out
