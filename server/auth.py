"""Authentication, the first link of the gateway's interceptor chain.

With a tokens file (``MLGATE_AUTH_TOKENS_FILE``) every call but the open ones (health, reflection)
must carry ``authorization: Bearer <token>``: no token or an unknown one is UNAUTHENTICATED, a
known one without the method's role (``server.roles``) is PERMISSION_DENIED naming the role. The
handler then runs with ``current_caller()`` set, so servicers can record and check ownership.
Tokens never reach the log; names do. Without a tokens file the gateway is open and
``current_caller()`` is None.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import grpc

from mlgate.errors import PermissionDenied
from mlgate.tokens import Caller, Role, TokenFile
from server.interceptors import Context, Continuation, EdgeInterceptor, Handler
from server.roles import required_role

__all__ = [
    "AuthInterceptor",
    "Refused",
    "act_as",
    "admit",
    "bearer_token",
    "current_caller",
    "require",
]

log = logging.getLogger(__name__)

# Each RPC runs in its own task, so a value set for one call is never seen by another.
_CALLER: ContextVar[Caller | None] = ContextVar("mlgate_caller", default=None)


def current_caller() -> Caller | None:
    """Who is calling; None when the gateway has no tokens file (everyone may do everything)."""
    return _CALLER.get()


def require(role: Role, what: str) -> None:
    """``PermissionDenied`` unless the caller has ``role`` (always fine on an open gateway)."""
    caller = current_caller()
    if caller is not None and not caller.may(role):
        raise PermissionDenied(
            f"{what} needs the {role} role; token {caller.name!r} has {caller.role}"
        )


def _bearer(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            token = bearer_token(value)
            if token:
                return token
    return ""


class Refused(Exception):
    """A call the tokens file does not admit: the status code name and the message to answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def admit(tokens: TokenFile, method: str, token: str, what: str = "") -> Caller | None:
    """Who calls ``method`` with ``token`` (its bearer token, "" for none), if the tokens file
    lets it; None for an open method. Raises ``Refused``: UNAUTHENTICATED for no token or an
    unknown one, PERMISSION_DENIED naming the role it lacks. ``what``: the call as its caller
    knows it (an HTTP route), when that is not the method's name. Every binding of the API
    (gRPC, the inference protocol's REST) admits its callers here."""
    needed = required_role(method)
    if needed is None:
        return None
    caller = tokens.lookup(token) if token else None
    if caller is None:
        log.info("refused %s: %s", method, "an unknown token" if token else "no token")
        raise Refused(
            "UNAUTHENTICATED",
            "this gateway does not know that token (revoked or mistyped?)"
            if token
            else "this gateway needs a token: send 'authorization: Bearer <token>' "
            "(mlgate --token or MLGATE_TOKEN)",
        )
    if not caller.may(needed):
        log.info(
            "refused %s to %s: it needs %s, the token has %s",
            method,
            caller.name,
            needed,
            caller.role,
        )
        raise Refused(
            "PERMISSION_DENIED",
            f"{what or method.lstrip('/')} needs the {needed} role; token {caller.name!r} has "
            f"{caller.role}",
        )
    return caller


def act_as(caller: Caller) -> None:
    """Make ``caller`` the current caller for the rest of the running task: every call runs in
    a task of its own, so nobody else sees it."""
    _CALLER.set(caller)


def bearer_token(authorization: str) -> str:
    """The token of an ``Authorization: Bearer <token>`` header's value; "" for any other."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class AuthInterceptor(EdgeInterceptor):
    """Checks each call's token against the tokens file and the method's role; first in the
    chain, so a caller it refuses reaches nothing else."""

    def __init__(self, tokens: TokenFile | None) -> None:
        super().__init__()
        self._tokens = tokens

    async def intercept_service(  # type: ignore[override]
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        if self._tokens is None:  # an open gateway: nothing to check, nothing to enclose
            return await continuation(handler_call_details)
        return await super().intercept_service(continuation, handler_call_details)

    @contextlib.asynccontextmanager
    async def around(self, method: str, context: Context) -> AsyncIterator[None]:
        if self._tokens is not None:
            try:
                caller = admit(self._tokens, method, _bearer(context.invocation_metadata()))
            except Refused as refused:
                await context.abort(grpc.StatusCode[refused.code], refused.message)
            if caller is not None:
                act_as(caller)
        yield
