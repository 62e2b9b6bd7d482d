"""The Open Inference Protocol's ``inference.GRPCInferenceService`` on the gateway's port.

``ModelInfer`` checks the request's size (``server.infer_limits``), resolves the model (an id, or
a registry name with ``model_version``), checks the tensors against the model's record
(``mlgate.tensors``), and hands the request, as the bytes it arrived in, to the batcher; the worker answers with the complete response, which goes back to
the caller as the bytes it arrived in. So the gateway neither builds nor copies tensors, and
needs no numpy. (The edge counts every call in ``mlgate_inference_requests_total`` by status.)
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Callable
from typing import Any

import grpc

from mlgate.errors import NotFound
from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.refs import ModelRef, ref_from_parts
from mlgate.tensors import check_request, feature_datatype, outputs_of
from mlgate.v1 import models_pb2
from server.batching import Batcher, error_of
from server.decoding import decoded
from server.infer_limits import RequestLimits
from server.model_catalog import ModelCatalog

__all__ = ["SERVICE_NAME", "InferenceServicer", "add_inference_service"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
Context = grpc.aio.ServicerContext[Any, Any]

_PLATFORM = "mlgate_sklearn"
try:
    _VERSION = importlib.metadata.version("mlgate")
except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
    _VERSION = "unknown"


class InferenceServicer:
    """ModelInfer through the batcher; the readiness and metadata calls from the registry."""

    def __init__(
        self,
        models: ModelCatalog,
        batcher: Batcher,
        ready: Callable[[], bool],
        *,
        timeout: float,
        limits: RequestLimits,
    ) -> None:
        """``timeout``: how long a ModelInfer waits for a worker when its client set no
        deadline; ``limits``: how large one request may be."""
        self._timeout = timeout
        self._limits = limits
        self._models = models
        self._batcher = batcher
        self._ready = ready

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self._ready())

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="mlgate", version=_VERSION)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        try:
            await self._record(ref_from_parts(request.name, request.version, "name"))
        except NotFound:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=self._ready())

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        ref = ref_from_parts(request.name, request.version, "name")
        model = await self._models.get(str(ref))
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=request.name,
            versions=[str(model.version)] if model.version else [],
            platform=_PLATFORM,
            inputs=[
                tensor(name=f.name, datatype=feature_datatype(f.dtype), shape=[-1])
                for f in model.features
            ],
            outputs=[
                tensor(name=name, datatype=datatype, shape=shape)
                for name, datatype, shape in outputs_of(model)
            ],
        )

    async def _record(self, ref: ModelRef) -> models_pb2.Model:
        return await self._models.manifest(await self._models.resolve_ref(ref))

    async def ModelInfer(self, data: bytes, context: Context) -> bytes:
        self._limits.check_sent(len(data))
        request = decoded(pb.ModelInferRequest, data)
        self._limits.check_tensors(request)
        ref = ref_from_parts(request.model_name, request.model_version)
        record = await self._record(ref)
        rows = check_request(request, record)
        version = str(ref.version) if ref.version else request.model_version
        del request  # the batcher sends the bytes: the parsed copy is not kept while it waits
        remaining = context.time_remaining()
        deadline = time.time() + (self._timeout if remaining is None else remaining)
        outcome = await self._batcher.submit(
            (record.id, record.sha256, version), data, rows, deadline
        )
        error = error_of(outcome)
        if error is not None:
            raise error
        return outcome.response


def _as_is(data: bytes) -> bytes:
    return data


def add_inference_service(servicer: InferenceServicer, server: grpc.aio.Server) -> None:
    """Register the service; ModelInfer takes and gives bytes as they travel (see above)."""

    def unary(behaviour: Any, request: Any, response: Any) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=request, response_serializer=response
        )

    handlers = {
        "ServerLive": unary(
            servicer.ServerLive,
            pb.ServerLiveRequest.FromString,
            pb.ServerLiveResponse.SerializeToString,
        ),
        "ServerReady": unary(
            servicer.ServerReady,
            pb.ServerReadyRequest.FromString,
            pb.ServerReadyResponse.SerializeToString,
        ),
        "ModelReady": unary(
            servicer.ModelReady,
            pb.ModelReadyRequest.FromString,
            pb.ModelReadyResponse.SerializeToString,
        ),
        "ServerMetadata": unary(
            servicer.ServerMetadata,
            pb.ServerMetadataRequest.FromString,
            pb.ServerMetadataResponse.SerializeToString,
        ),
        "ModelMetadata": unary(
            servicer.ModelMetadata,
            pb.ModelMetadataRequest.FromString,
            pb.ModelMetadataResponse.SerializeToString,
        ),
        # Parsed by the handler once its size is known to be within bounds.
        "ModelInfer": unary(servicer.ModelInfer, _as_is, _as_is),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
