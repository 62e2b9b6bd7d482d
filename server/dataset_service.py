"""The DatasetService servicer: CSV and Parquet uploads streamed to storage, dataset schemas, and
downloads (``server.dataset_download``)."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from typing import Any, BinaryIO, cast

import grpc

from mlgate.errors import AlreadyExists, InvalidField, ResourceExhausted
from mlgate.ids import check_dataset_id
from mlgate.v1 import datasets_pb2, datasets_pb2_grpc
from server.dataset_download import DatasetDownloads
from server.ownership import check_owner, owner_name
from server.paging import paginate
from storage.datasets import MAX_UPLOAD_BYTES, DatasetCatalog

__all__ = ["DatasetServicer"]

Context = grpc.aio.ServicerContext[Any, Any]
_SPOOL_BYTES = 16 * 1024 * 1024


def _may_replace(dataset: datasets_pb2.Dataset) -> None:
    # Replacing takes away data others may be training on: its owner's call, or admin's.
    check_owner(dataset.owner, "replacing", f"dataset {dataset.id!r}")


def _may_delete(dataset: datasets_pb2.Dataset) -> None:
    check_owner(dataset.owner, "deleting", f"dataset {dataset.id!r}")


class DatasetServicer(datasets_pb2_grpc.DatasetServiceServicer):
    def __init__(self, catalog: DatasetCatalog) -> None:
        self._catalog = catalog
        self._downloads = DatasetDownloads(catalog)

    async def UploadDataset(
        self, request_iterator: AsyncIterator[datasets_pb2.UploadDatasetRequest], context: Context
    ) -> datasets_pb2.UploadDatasetResponse:
        # Spool to disk as chunks arrive, so a large upload never sits whole in memory.
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
            dataset_id = ""
            replace = False
            delimiter = form = ""
            size = 0
            async for message in request_iterator:
                if not dataset_id:
                    dataset_id = check_dataset_id(message.dataset_id)
                    replace = message.replace
                    delimiter = message.delimiter
                    form = message.format
                    try:  # refused before the client sends the whole file...
                        await asyncio.to_thread(self._catalog.refuse_existing, dataset_id)
                    except AlreadyExists:
                        if not replace:
                            raise
                        _may_replace(await asyncio.to_thread(self._catalog.describe, dataset_id))
                elif message.dataset_id and message.dataset_id != dataset_id:
                    raise InvalidField("dataset_id", "must not change between messages")
                size += len(message.chunk)
                if size > MAX_UPLOAD_BYTES:
                    raise ResourceExhausted(
                        f"dataset is larger than {MAX_UPLOAD_BYTES // 2**20} MiB; split it"
                    )
                await asyncio.to_thread(spool.write, message.chunk)
            if not dataset_id:
                raise InvalidField("dataset_id", "is required on the first message")
            spool.seek(0)
            # ...and checked again where it is stored: one uploaded meanwhile is someone's too.
            dataset = await asyncio.to_thread(
                lambda: self._catalog.upload_file(
                    dataset_id,
                    cast(BinaryIO, spool),
                    replace=replace,
                    delimiter=delimiter,
                    owner=owner_name(),
                    may_replace=_may_replace,
                    form=form,
                )
            )
        return datasets_pb2.UploadDatasetResponse(dataset=dataset)

    async def GetDataset(
        self, request: datasets_pb2.GetDatasetRequest, context: Context
    ) -> datasets_pb2.GetDatasetResponse:
        return datasets_pb2.GetDatasetResponse(
            dataset=await asyncio.to_thread(self._catalog.describe, request.dataset_id)
        )

    async def ListDatasets(
        self, request: datasets_pb2.ListDatasetsRequest, context: Context
    ) -> datasets_pb2.ListDatasetsResponse:
        found = await asyncio.to_thread(self._catalog.list)
        # Listed by id; the cursor's time part is unused, so every dataset ranks equally on it.
        ordered = sorted(found, key=lambda d: d.id, reverse=True)
        page, token = paginate(ordered, lambda d: (0, d.id), request.page_size, request.page_token)
        return datasets_pb2.ListDatasetsResponse(datasets=page, next_page_token=token)

    async def DeleteDataset(
        self, request: datasets_pb2.DeleteDatasetRequest, context: Context
    ) -> datasets_pb2.DeleteDatasetResponse:
        await asyncio.to_thread(self._catalog.delete, request.dataset_id, _may_delete)
        return datasets_pb2.DeleteDatasetResponse()

    async def DownloadDataset(
        self, request: datasets_pb2.DownloadDatasetRequest, context: Context
    ) -> AsyncIterator[datasets_pb2.DownloadDatasetResponse]:
        async for response in self._downloads.stream(request.dataset_id):
            yield response
