"""The ModelService servicer: model records read from the manifests in storage."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from mlgate.ids import check_model_id
from mlgate.v1 import models_pb2, models_pb2_grpc
from server.manifests import ManifestCache
from server.paging import paginate
from server.status import grpc_errors
from storage.models import ModelRepository

__all__ = ["ModelServicer"]

Context = grpc.aio.ServicerContext[Any, Any]


class ModelServicer(models_pb2_grpc.ModelServiceServicer):
    def __init__(self, models: ModelRepository, manifests: ManifestCache) -> None:
        self._models = models
        self._manifests = manifests

    @grpc_errors
    async def GetModel(
        self, request: models_pb2.GetModelRequest, context: Context
    ) -> models_pb2.GetModelResponse:
        check_model_id(request.model_id)
        return models_pb2.GetModelResponse(
            model=await asyncio.to_thread(self._models.get, request.model_id)
        )

    @grpc_errors
    async def ListModels(
        self, request: models_pb2.ListModelsRequest, context: Context
    ) -> models_pb2.ListModelsResponse:
        records = await asyncio.to_thread(self._models.list)
        page, token = paginate(
            records,
            lambda m: (m.create_time.ToNanoseconds(), m.id),
            request.page_size,
            request.page_token,
        )
        return models_pb2.ListModelsResponse(models=page, next_page_token=token)

    @grpc_errors
    async def DeleteModel(
        self, request: models_pb2.DeleteModelRequest, context: Context
    ) -> models_pb2.DeleteModelResponse:
        check_model_id(request.model_id)
        await asyncio.to_thread(self._models.delete, request.model_id)
        self._manifests.forget(request.model_id)
        return models_pb2.DeleteModelResponse()
