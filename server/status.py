"""The gateway's error boundary: every error becomes a gRPC status with a message a person can act on.

Domain errors carry their code (``mlgate.errors``); the brokers' and storage's own error trees are
translated here, in one table, so servicers never see driver exceptions.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from brokers.errors import BrokerError, BrokerUnavailable
from mlgate.errors import MLGateError
from storage.errors import IntegrityError, ObjectNotFound, StorageError, StorageUnavailable

__all__ = ["abort_with", "grpc_errors", "translate"]

log = logging.getLogger(__name__)

_FOREIGN: list[tuple[type[Exception], str, str]] = [
    (BrokerUnavailable, "UNAVAILABLE", "the job broker is unreachable; try again shortly"),
    (BrokerError, "UNAVAILABLE", "the job broker is not accepting jobs"),
    (ObjectNotFound, "NOT_FOUND", "not found in storage"),
    (IntegrityError, "DATA_LOSS", "stored data failed its integrity check"),
    (StorageUnavailable, "UNAVAILABLE", "storage is unreachable; try again shortly"),
    (StorageError, "INTERNAL", "storage failed"),
]


def translate(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message for an exception."""
    if isinstance(exc, MLGateError):
        return grpc.StatusCode[exc.code], exc.message
    for kind, code, message in _FOREIGN:
        if isinstance(exc, kind):
            # The detail names hosts (and, mistyped, could name more): the operator's log gets
            # it, the caller gets the service.
            log.warning("%s: %s", message, exc)
            return grpc.StatusCode[code], message
    log.exception("unexpected error in the gateway", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> NoReturn:
    code, message = translate(exc)
    await context.abort(code, message)
    raise AssertionError("unreachable: abort raises")


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def grpc_errors(method: F) -> F:
    """Turn exceptions raised by a unary handler into gRPC statuses."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await method(self, request, context)
        except (MLGateError, BrokerError, StorageError) as exc:
            await abort_with(context, exc)

    return wrapper  # type: ignore[return-value]
