"""Requests whose bytes do not decode as the method's message: INVALID_ARGUMENT naming the
message, never UNKNOWN or INTERNAL.

grpc.aio deserializes a unary request before any interceptor or handler runs, and answers an
exception there with UNKNOWN ("Unexpected <class 'DecodeError'>") and a traceback in the log; a
streaming request's messages are deserialized as the handler reads them, where an exception ends
the call INTERNAL. ``guarded`` wraps a method's deserializer so neither happens: for a streaming
request it raises ``InvalidField`` where the handler reads, which the error interceptor maps;
for a unary one it hands over an ``Undecodable`` in the request's place, which the error
interceptor raises inside the call (``server.interceptors``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message

from mlgate.errors import InvalidField

__all__ = ["Undecodable", "decoded", "guarded"]

M = TypeVar("M", bound=Message)
Deserializer = Callable[[bytes], Any]


class Undecodable:
    """In place of a unary request that did not decode: the error to answer with."""

    __slots__ = ("error",)

    def __init__(self, error: InvalidField) -> None:
        self.error = error


def _refusal(message: str, exc: Exception) -> InvalidField:
    return InvalidField(
        "request",
        f"the bytes received do not decode as {message} ({exc}); is the client built from "
        "this gateway's protos?",
    )


def decoded(kind: type[M], data: bytes) -> M:
    """``data`` parsed as ``kind``; ``InvalidField`` when it does not decode."""
    try:
        return kind.FromString(data)
    except DecodeError as exc:
        raise _refusal(kind.DESCRIPTOR.full_name, exc) from None


def _message_name(deserializer: Deserializer) -> str:
    # A generated FromString is bound to its message class, which names the message.
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    name = getattr(descriptor, "full_name", None)
    return str(name) if name else "the method's request message"


def guarded(deserializer: Deserializer | None, *, streaming: bool) -> Deserializer | None:
    """``deserializer`` answering undecodable bytes as the module's docstring says; None (grpc
    hands over the bytes as they came) stays None."""
    if deserializer is None or getattr(deserializer, "_guarded", False):
        return deserializer
    inner: Deserializer = deserializer
    name = _message_name(inner)

    def deserialize(data: bytes) -> Any:
        try:
            return inner(data)
        except DecodeError as exc:
            error = _refusal(name, exc)
            if streaming:
                raise error from None
            return Undecodable(error)

    deserialize._guarded = True  # type: ignore[attr-defined]
    return deserialize
