"""The gateway's edge: one chain of interceptors that every RPC passes through, unary or streaming.

A link is an ``EdgeInterceptor``. Its ``around(method, context)`` is an async context manager that
encloses the whole call: the handler's run for a unary reply, the whole stream for a streaming
one. So one link serves all four kinds of RPC, and a new RPC cannot miss it. ``edge_chain`` lists
the links in order; the first encloses the rest. Tracing (when on) comes first, so it sees each
call's final status; then ``ErrorInterceptor``, so what the links after it raise is mapped like
what the servicers raise. Authentication
(``server.auth.AuthInterceptor``) goes before the whole chain: a caller it refuses reaches nothing,
and its refusals are statuses it sets itself.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeAlias

import grpc

from mlgate import tracing
from mlgate.metrics import INFERENCE_REQUESTS, STREAMS_OPEN
from server.decoding import Undecodable, guarded
from server.error_mapping import Backends, translate

__all__ = [
    "EVENT_STREAMS",
    "INFERENCE_METHODS",
    "Context",
    "EdgeInterceptor",
    "ErrorInterceptor",
    "MetricsInterceptor",
    "TracingInterceptor",
    "edge_chain",
]

Context = grpc.aio.ServicerContext[Any, Any]
# The stubs make these generic; grpc's runtime classes are not subscriptable.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
Around = Callable[[Context], AbstractAsyncContextManager[None]]
Continuation: TypeAlias = "Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]"

_MAKERS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


class EdgeInterceptor(grpc.aio.ServerInterceptor, abc.ABC):  # type: ignore[type-arg]
    """A link of the chain: subclasses say what encloses each call."""

    #: Whether this link answers requests that do not decode (``server.decoding``): the one
    #: that maps errors, inside the links that must see the status it sets.
    guards_decoding = False

    def __init__(self) -> None:
        # Wrapped once per method (and per handler a later link returns), not per call.
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    @abc.abstractmethod
    def around(self, method: str, context: Context) -> AbstractAsyncContextManager[None]:
        """What encloses one call of ``method``: it may refuse the call on entry by raising, and
        sees on exit how the call ended (normally, or with the exception it raised)."""

    async def intercept_service(  # type: ignore[override]
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None  # no such method: grpc answers UNIMPLEMENTED
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = _enclose(
            handler, lambda context: self.around(method, context), guard=self.guards_decoding
        )
        self._wrapped[method] = (handler, wrapped)
        return wrapped


def _enclose(handler: Handler, around: Around, *, guard: bool = False) -> Handler:
    """The same handler with ``around`` enclosing each call of its behaviour; with ``guard``,
    a request that does not decode is answered INVALID_ARGUMENT inside ``around``."""
    kind = (handler.request_streaming, handler.response_streaming)
    deserializer = handler.request_deserializer
    if guard:
        deserializer = guarded(deserializer, streaming=handler.request_streaming)
    behavior: Any = (
        handler.stream_stream or handler.stream_unary or handler.unary_stream or handler.unary_unary
    )
    # grpc.aio takes a streaming reply either as an async generator or as a coroutine that
    # writes to the context (as the health service's Watch does); keep the handler's form.
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            async with around(context):
                if guard and isinstance(request, Undecodable):
                    raise request.error
                async for reply in behavior(request, context):
                    yield reply

        enclosed: Callable[..., Any] = stream
    else:

        async def call(request: Any, context: Context) -> Any:
            async with around(context):
                if guard and isinstance(request, Undecodable):
                    raise request.error
                return await behavior(request, context)

        enclosed = call
    return _MAKERS[kind](
        enclosed,
        request_deserializer=deserializer,
        response_serializer=handler.response_serializer,
    )


class ErrorInterceptor(EdgeInterceptor):
    """Maps every exception a call raises to its status (``server.error_mapping``), in one place,
    and answers requests that do not decode INVALID_ARGUMENT (``server.decoding``)."""

    guards_decoding = True

    def __init__(self, backends: Backends) -> None:
        super().__init__()
        self._backends = backends

    @contextlib.asynccontextmanager
    async def around(self, method: str, context: Context) -> AsyncIterator[None]:
        try:
            yield
        except grpc.aio.AbortError:
            raise  # a status set deliberately, by a handler or a later link
        except Exception as exc:
            code, message = translate(exc, self._backends, method)
            await context.abort(code, message)


# Calls counted by ``mlgate_inference_requests_total`` and streams by ``mlgate_streams_open``.
INFERENCE_METHODS = frozenset(
    {"/mlgate.v1.JobService/Predict", "/inference.GRPCInferenceService/ModelInfer"}
)
EVENT_STREAMS = frozenset(
    {
        "/mlgate.v1.JobService/Train",
        "/mlgate.v1.JobService/Search",
        "/mlgate.v1.JobService/Predict",
        "/mlgate.v1.JobService/WatchJob",
    }
)


class MetricsInterceptor(EdgeInterceptor):
    """Counts prediction calls by their final status and the job event streams open. It encloses
    the error interceptor, so it sees the status a call really ended with."""

    @contextlib.asynccontextmanager
    async def around(self, method: str, context: Context) -> AsyncIterator[None]:
        stream = method in EVENT_STREAMS
        if stream:
            STREAMS_OPEN.inc()
        code = "OK"
        try:
            yield
        except (asyncio.CancelledError, GeneratorExit):
            # The client went away or its deadline passed; a client that leaves a stream once it
            # has the final event closes the server's generator (GeneratorExit) before it returns.
            code = "CANCELLED"
            raise
        except BaseException:
            found = context.code()
            code = found.name if isinstance(found, grpc.StatusCode) else "UNKNOWN"
            raise
        finally:
            if stream:
                STREAMS_OPEN.dec()
            if method in INFERENCE_METHODS:
                INFERENCE_REQUESTS.labels(code).inc()


class TracingInterceptor(EdgeInterceptor):
    """A server span per call, a child of the caller's trace when its metadata carries one.
    Built on this chain rather than the OpenTelemetry gRPC instrumentation, whose aio interceptor
    fails on handlers that write to the context instead of yielding (the health service's Watch)."""

    @contextlib.asynccontextmanager
    async def around(self, method: str, context: Context) -> AsyncIterator[None]:
        metadata = context.invocation_metadata() or ()
        parent = tracing.extract(tuple((k, v) for k, v in metadata if isinstance(v, str)))
        with tracing.span(method, parent=parent, server=True):
            yield


def edge_chain(backends: Backends) -> list[grpc.aio.ServerInterceptor]:  # type: ignore[type-arg]
    """The gateway's interceptors, outermost first: tracing (when on) and metrics see every call
    and its final status; the error interceptor maps whatever a handler raises, naming the
    ``backends`` that failed."""
    tracer: list[EdgeInterceptor] = [TracingInterceptor()] if tracing.enabled() else []
    return [*tracer, MetricsInterceptor(), ErrorInterceptor(backends)]
