"""The Open Inference Protocol's ``inference.GRPCInferenceService`` on the gateway's port.

``ModelInfer`` checks the request's size (``server.infer_limits``), resolves the model (an id, or
a registry name with ``model_version``; a weighted alias draws a version, or takes the one the
request's ``routing_key`` parameter hashes to: ``server.routing``), checks the tensors against the model's record
(``mlgate.tensors``), and hands the request, as the bytes it arrived in, to the batcher; the
worker answers with the complete response, which goes back to the caller as the bytes it arrived
in. So the gateway neither builds nor copies tensors, and needs no numpy. (The edge counts every
call in ``mlgate_inference_requests_total`` by status.) The response names the version that
answered (``model_version``) whichever way the model was named: by id, name, alias or version.

The protocol's REST binding (``server.rest``) calls the same coroutines (``infer``,
``metadata``, ``model_ready``, ``ready``): one path, two encodings.
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
from server.drift import attach_drift
from server.infer_limits import RequestLimits
from server.model_catalog import ModelCatalog
from server.routing import infer_routing_key
from server.serving_metrics import INFER, served
from server.shadow import Mirror, attach

__all__ = [
    "SERVER_NAME",
    "SERVER_VERSION",
    "SERVICE_NAME",
    "InferenceServicer",
    "add_inference_service",
]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
Context = grpc.aio.ServicerContext[Any, Any]

_PLATFORM = "mlgate_sklearn"
#: What ServerMetadata answers, in either binding.
SERVER_NAME = "mlgate"
try:
    SERVER_VERSION = importlib.metadata.version("mlgate")
except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
    SERVER_VERSION = "unknown"


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
        drift_window: int = 0,
    ) -> None:
        """``timeout``: how long a ModelInfer waits for a worker when its client set no
        deadline; ``limits``: how large one request may be; ``drift_window``: the rows of
        input drift's window per model version (``server.drift``; 0: not tracked)."""
        self._timeout = timeout
        self._limits = limits
        self._models = models
        self._batcher = batcher
        self._ready = ready
        self._drift = attach_drift(models, drift_window)  # Predict and GetModelDrift find it
        self._mirror = Mirror(batcher, models, timeout=timeout)
        attach(models, self._mirror)  # Predict and GetShadowComparison find it there

    # --- what both bindings call ---

    def ready(self) -> bool:
        """Whether the gateway can take inference requests now (its broker answers)."""
        return self._ready()

    async def model_ready(self, name: str, version: str) -> bool:
        """Whether the model can be served now; NotFound for a model that does not exist."""
        await self._record(ref_from_parts(name, version, "name"))
        return self._ready()

    async def metadata(self, name: str, version: str) -> pb.ModelMetadataResponse:
        """The model's inputs and outputs, and every version of its name (none without one)."""
        ref = ref_from_parts(name, version, "name")
        model = await self._models.get(str(ref))
        versions = await self._models.version_numbers(model.name) if model.name else []
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=name,
            versions=[str(number) for number in versions],
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

    async def infer(
        self, request: pb.ModelInferRequest, data: bytes, remaining: float | None
    ) -> bytes:
        """The serialized response to ``request`` (whose bytes are ``data``), evaluated through
        the batcher within ``remaining`` seconds (None: the gateway's timeout). The caller
        must not keep ``request``: it is dropped here while the batch waits."""
        self._limits.check_tensors(request)
        ref = ref_from_parts(request.model_name, request.model_version)
        routed = await self._models.route_ref(ref, infer_routing_key(request))
        with served(routed.name, routed.version, routed.alias, INFER) as timer:
            record = await self._models.manifest(routed.model_id)
            rows = check_request(request, record)
            # Queued for the drift thread, which reads the parsed request; nothing more here.
            self._drift.offer_infer(record, (routed.name, routed.version), request, rows, len(data))
            version = str(routed.version) if routed.version else ""
            del request  # the batcher sends the bytes: the parsed copy is not kept while it waits
            deadline = time.time() + (self._timeout if remaining is None else remaining)
            outcome = await self._batcher.submit(
                (record.id, record.sha256, version), data, rows, deadline
            )
            error = error_of(outcome)
            if error is not None:
                raise error
        if routed.shadow_model_id:  # queued only: sent once this answer is on its way
            self._mirror.offer(routed, record, data, outcome.response, timer.seconds)
        return outcome.response

    async def _record(self, ref: ModelRef) -> models_pb2.Model:
        return await self._models.manifest(await self._models.resolve_ref(ref))

    # --- the gRPC binding ---

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.ready())

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=SERVER_VERSION)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        try:
            return pb.ModelReadyResponse(
                ready=await self.model_ready(request.name, request.version)
            )
        except NotFound:
            return pb.ModelReadyResponse(ready=False)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        return await self.metadata(request.name, request.version)

    async def ModelInfer(self, data: bytes, context: Context) -> bytes:
        self._limits.check_sent(len(data))
        # Not bound to a name here: ``infer`` drops the parsed copy while the batch waits.
        return await self.infer(decoded(pb.ModelInferRequest, data), data, context.time_remaining())


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
