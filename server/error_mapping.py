"""The edge's side of the one error mapping (``mlgate.failures``), applied by ``ErrorInterceptor``:
the gRPC status for whatever a call raised, as every worker path would report the same fault."""

from __future__ import annotations

import grpc

from mlgate.failures import MAX_MESSAGE_BYTES, Backends, cap, public

__all__ = ["MAX_MESSAGE_BYTES", "Backends", "cap", "translate"]


def translate(exc: Exception, backends: Backends, method: str) -> tuple[grpc.StatusCode, str]:
    """The status code and message for an exception raised while serving ``method``; what the
    client is not told goes to the gateway's log."""
    failure = public(exc, backends, method)
    return grpc.StatusCode[failure.code], failure.message
