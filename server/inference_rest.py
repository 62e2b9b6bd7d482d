"""The Open Inference Protocol's REST binding (``MLGATE_HTTP_PORT``): its routes, each the gRPC
method it stands for, called through the same servicer (``server.inference_service``).

=====================================================  ===============
``GET  /v2/health/live``                               ServerLive
``GET  /v2/health/ready``                              ServerReady
``GET  /v2``                                           ServerMetadata
``GET  /v2/models/{name}[/versions/{v}]``              ModelMetadata
``GET  /v2/models/{name}[/versions/{v}]/ready``        ModelReady
``POST /v2/models/{name}[/versions/{v}]/infer``        ModelInfer
=====================================================  ===============

What holds for a gRPC call holds for its route: the token (``Authorization: Bearer``) and role of
its method (``server.auth.admit``, ``server.roles``), one error mapping (``mlgate.failures``),
the same batcher, and the same count in ``mlgate_inference_requests_total`` by gRPC status code.
Errors are the protocol's ``{"error": "..."}`` with the HTTP status Google's API design gives each
gRPC code (400, 401, 403, 404, 429, 503, 504, ...), and 413 for a request over a size bound.
Health answers 200 when true and 503 when false, with a JSON body either way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import unquote

from mlgate import tracing
from mlgate.errors import InvalidField
from mlgate.failures import Backends, public
from mlgate.metrics import INFERENCE_REQUESTS
from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.tokens import TokenFile
from server.auth import Refused, act_as, admit, bearer_token
from server.infer_limits import RequestTooLarge, size_text
from server.inference_service import SERVER_NAME, SERVER_VERSION, InferenceServicer
from server.oip_json import infer_request, infer_response, metadata_response
from server.rest import Request, Response, error_response, json_response

T = TypeVar("T")

__all__ = ["HTTP_STATUS", "InferenceRoutes", "too_large"]

_SERVICE = "/inference.GRPCInferenceService/"
_INFER = _SERVICE + "ModelInfer"

#: The HTTP status of each gRPC status code (google.rpc.Code's documented mapping).
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
_ROUTES = (
    "GET /v2/health/live, GET /v2/health/ready, GET /v2, "
    "GET /v2/models/{name}[/versions/{version}], "
    "GET /v2/models/{name}[/versions/{version}]/ready, "
    "POST /v2/models/{name}[/versions/{version}]/infer"
)
# Requests and responses of this many bytes or more are converted off the event loop.
_ON_A_THREAD = 256 * 2**10
# Triton's binary tensor extension: its requests are not JSON.
_BINARY_HEADER = "inference-header-content-length"


class _Route:
    """A request matched to its method: what answers it, with the model it names, if any."""

    __slots__ = ("method", "name", "verb", "version")

    def __init__(self, verb: str, method: str, name: str = "", version: str = "") -> None:
        self.verb = verb
        self.method = method
        self.name = name
        self.version = version


def _match(path: str) -> _Route | None:
    parts = path.split("/")
    if parts[:2] != ["", "v2"]:
        return None
    rest = parts[2:]
    if not rest:
        return _Route("GET", "ServerMetadata")
    if rest in (["health", "live"], ["health", "ready"]):
        return _Route("GET", "ServerLive" if rest[1] == "live" else "ServerReady")
    if rest[0] != "models" or len(rest) < 2 or not rest[1]:
        return None
    name, rest = unquote(rest[1]), rest[2:]
    version = ""
    if rest[:1] == ["versions"]:
        if len(rest) < 2 or not rest[1]:
            return None
        version, rest = unquote(rest[1]), rest[2:]
    if not rest:
        return _Route("GET", "ModelMetadata", name, version)
    if rest == ["ready"]:
        return _Route("GET", "ModelReady", name, version)
    if rest == ["infer"]:
        return _Route("POST", "ModelInfer", name, version)
    return None


class InferenceRoutes:
    """Answers the REST binding's requests through ``servicer``; an ``rest.Handler``."""

    def __init__(
        self,
        servicer: InferenceServicer,
        tokens: TokenFile | None,
        backends: Backends,
        *,
        timeout: float | None = None,
    ) -> None:
        """``timeout``: how long an inference waits for a worker (None: the servicer's)."""
        self._servicer = servicer
        self._tokens = tokens
        self._backends = backends
        self._timeout = timeout
        self._calls: dict[str, Callable[[Request, _Route], Awaitable[Response]]] = {
            "ServerLive": self._live,
            "ServerReady": self._ready,
            "ServerMetadata": self._server_metadata,
            "ModelMetadata": self._metadata,
            "ModelReady": self._model_ready,
            "ModelInfer": self._infer,
        }

    async def __call__(self, request: Request) -> Response:
        route = _match(request.path)
        if route is None:
            return error_response(
                404, f"no such endpoint: {request.path[:200]}; this gateway serves {_ROUTES}"
            )
        if request.method != route.verb:
            return error_response(
                405, f"{request.path[:200]} takes {route.verb}", ("allow", route.verb)
            )
        method = _SERVICE + route.method
        if not tracing.enabled():
            return await self._answer(request, route, method)
        parent = tracing.extract(tuple(request.headers.items()))
        with tracing.span(f"{request.method} {request.path}", parent=parent, server=True):
            return await self._answer(request, route, method)

    async def _answer(self, request: Request, route: _Route, method: str) -> Response:
        code = "OK"
        try:
            if self._tokens is not None:
                token = bearer_token(request.headers.get("authorization", ""))
                caller = admit(self._tokens, method, token, f"{request.method} {request.path}")
                if caller is not None:
                    act_as(caller)  # this request's task only
            return await self._calls[route.method](request, route)
        except asyncio.CancelledError:
            code = "CANCELLED"  # the client closed its connection
            raise
        except Refused as refused:
            code = refused.code
            challenge = ("www-authenticate", "Bearer") if code == "UNAUTHENTICATED" else None
            return error_response(HTTP_STATUS[code], refused.message, *filter(None, [challenge]))
        except Exception as exc:
            failure = public(exc, self._backends, method)
            code = failure.code
            status = 413 if isinstance(exc, RequestTooLarge) else HTTP_STATUS.get(code, 500)
            return error_response(status, failure.message)
        finally:
            if method == _INFER:
                INFERENCE_REQUESTS.labels(code).inc()

    async def _live(self, request: Request, route: _Route) -> Response:
        return json_response(200, {"live": True})

    async def _ready(self, request: Request, route: _Route) -> Response:
        ready = self._servicer.ready()
        return json_response(200 if ready else 503, {"ready": ready})

    async def _server_metadata(self, request: Request, route: _Route) -> Response:
        return json_response(
            200, {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": []}
        )

    async def _metadata(self, request: Request, route: _Route) -> Response:
        metadata = await self._servicer.metadata(route.name, route.version)
        return json_response(200, metadata_response(metadata))

    async def _model_ready(self, request: Request, route: _Route) -> Response:
        ready = await self._servicer.model_ready(route.name, route.version)
        return json_response(200 if ready else 503, {"name": route.name, "ready": ready})

    async def _infer(self, request: Request, route: _Route) -> Response:
        if _BINARY_HEADER in request.headers:
            raise InvalidField(
                "Inference-Header-Content-Length",
                'binary tensor data is not taken here; send JSON "data" '
                "(tritonclient.http: binary_data=False), or use the gRPC port",
            )
        parsed = _converted(len(request.body), _parsed, request.body, route.name, route.version)
        # Unpacked into the call, not kept here: ``infer`` drops the message while it waits.
        answer = await self._servicer.infer(*await parsed, self._timeout)
        response = await _converted(len(answer), _answered, answer)
        return Response(200, response)


def _parsed(body: bytes, name: str, version: str) -> tuple[pb.ModelInferRequest, bytes]:
    request = infer_request(body, name, version)
    return request, request.SerializeToString()


def _answered(answer: bytes) -> bytes:
    return json.dumps(infer_response(answer)).encode()


async def _converted(size: int, convert: Callable[..., T], *args: object) -> T:
    """``convert(*args)``: here for small requests, on a thread for large ones (megabytes of
    JSON take tens of milliseconds that the gateway's other calls should not wait out)."""
    if size < _ON_A_THREAD:
        return convert(*args)
    return await asyncio.to_thread(convert, *args)


def too_large(size: int, limit: int) -> str:
    """The 413's message for a request body of ``size`` bytes over ``limit``."""
    return (
        f"the request is {size_text(size)}, over this gateway's limit of {size_text(limit)} "
        "per ModelInfer request (MLGATE_INFER_MAX_BYTES); send fewer rows per request, or ask "
        "its operator to raise the limit"
    )
