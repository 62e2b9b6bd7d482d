"""The ModelService servicer: model records, names, aliases and exports, through the catalog."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import grpc

from mlgate.v1 import models_pb2, models_pb2_grpc
from server.drift import drift_of, drift_response
from server.export_check import ExportCheck
from server.model_catalog import ModelCatalog
from server.paging import page_size
from server.routing import alias_message
from server.shadow import comparison_response, forget_alias, forget_version

__all__ = ["ModelServicer"]

Context = grpc.aio.ServicerContext[Any, Any]
_EXPORT_CHUNK = 1024 * 1024


class ModelServicer(models_pb2_grpc.ModelServiceServicer):
    def __init__(self, catalog: ModelCatalog, export_check: ExportCheck) -> None:
        self._catalog = catalog
        self._export_check = export_check

    async def GetModel(
        self, request: models_pb2.GetModelRequest, context: Context
    ) -> models_pb2.GetModelResponse:
        return models_pb2.GetModelResponse(model=await self._catalog.get(request.model_id))

    async def ListModels(
        self, request: models_pb2.ListModelsRequest, context: Context
    ) -> models_pb2.ListModelsResponse:
        found, token = await self._catalog.list_page(
            request.name, page_size(request.page_size), request.page_token
        )
        return models_pb2.ListModelsResponse(models=found, next_page_token=token)

    async def DeleteModel(
        self, request: models_pb2.DeleteModelRequest, context: Context
    ) -> models_pb2.DeleteModelResponse:
        entry = await self._catalog.delete(request.model_id, force=request.force)
        forget_version(self._catalog, entry.name, entry.version, entry.aliases)  # series go
        drift_of(self._catalog).forget(entry.model_id)  # its drift window and series too
        return models_pb2.DeleteModelResponse(
            model_id=entry.model_id, removed_aliases=entry.aliases
        )

    async def UpdateModel(
        self, request: models_pb2.UpdateModelRequest, context: Context
    ) -> models_pb2.UpdateModelResponse:
        description = request.description if request.HasField("description") else None
        model = await self._catalog.update(
            request.model_id, description, dict(request.set_tags), list(request.remove_tags)
        )
        return models_pb2.UpdateModelResponse(model=model)

    async def SetModelAlias(
        self, request: models_pb2.SetModelAliasRequest, context: Context
    ) -> models_pb2.SetModelAliasResponse:
        change = await self._catalog.set_alias(
            request.name,
            request.alias,
            request.version,
            [(route.version, route.weight) for route in request.routes],
            request.shadow_version,
        )
        return models_pb2.SetModelAliasResponse(
            alias=alias_message(change.alias, change), previous_version=change.previous_version
        )

    async def DeleteModelAlias(
        self, request: models_pb2.DeleteModelAliasRequest, context: Context
    ) -> models_pb2.DeleteModelAliasResponse:
        await self._catalog.delete_alias(request.name, request.alias)
        forget_alias(self._catalog, request.name, request.alias)
        return models_pb2.DeleteModelAliasResponse()

    async def GetModelDrift(
        self, request: models_pb2.GetModelDriftRequest, context: Context
    ) -> models_pb2.GetModelDriftResponse:
        return await drift_response(self._catalog, request.model_id)

    async def GetShadowComparison(
        self, request: models_pb2.GetShadowComparisonRequest, context: Context
    ) -> models_pb2.GetShadowComparisonResponse:
        return await comparison_response(self._catalog, request.name, request.alias)

    async def ExportModel(
        self, request: models_pb2.ExportModelRequest, context: Context
    ) -> AsyncIterator[models_pb2.ExportModelResponse]:
        # Spooled to a temporary file and checked against its digest before the first byte goes
        # out, so a client never receives an artifact that fails its integrity check.
        with tempfile.TemporaryFile() as spool:
            model, form = await self._catalog.export(request.model_id, spool)
            # A crafted artifact that passes its digest would still crash whoever loads it.
            await self._export_check.check(model, form, spool)
            yield models_pb2.ExportModelResponse(model=model, format=form)
            while chunk := await asyncio.to_thread(spool.read, _EXPORT_CHUNK):
                yield models_pb2.ExportModelResponse(chunk=chunk)
