"""How the client reaches a gateway that asks for TLS, a client certificate or a token.

``TLS`` names the PEM files (``MLGATE_TLS_CA`` to trust, ``MLGATE_TLS_CLIENT_CERT`` and
``MLGATE_TLS_CLIENT_KEY`` for mTLS); a token travels as ``authorization: Bearer <token>`` on every
call, added by a channel interceptor so no call can forget it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import grpc

__all__ = ["TLS", "open_channel", "tls_from_env", "token_from_env"]

ChannelOptions = Sequence[tuple[str, Any]]
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class TLS:
    """TLS to the gateway: ``ca_file`` to trust (default: the system's roots), and a client
    certificate and key for a gateway that requires them (mTLS)."""

    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    def __post_init__(self) -> None:
        if bool(self.client_cert) != bool(self.client_key):
            raise ValueError(
                "MLGATE_TLS_CLIENT_CERT and MLGATE_TLS_CLIENT_KEY go together: set both or neither"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        return cls(
            env.get("MLGATE_TLS_CA") or None,
            env.get("MLGATE_TLS_CLIENT_CERT") or None,
            env.get("MLGATE_TLS_CLIENT_KEY") or None,
        )

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file, "MLGATE_TLS_CA"),
            private_key=_read(self.client_key, "MLGATE_TLS_CLIENT_KEY"),
            certificate_chain=_read(self.client_cert, "MLGATE_TLS_CLIENT_CERT"),
        )


def _read(path: str | None, variable: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ValueError(f"{variable}: cannot read {path} ({exc.strerror})") from None


def tls_from_env(env: Mapping[str, str] | None = None, *, tls: bool = False) -> TLS | None:
    """TLS settings when ``tls`` (``--tls``), ``MLGATE_TLS`` or any ``MLGATE_TLS_*`` file asks
    for them; None for plaintext."""
    env = os.environ if env is None else env
    settings = TLS.from_env(env)
    wanted = tls or env.get("MLGATE_TLS", "").lower() in _TRUE or settings != TLS()
    return settings if wanted else None


def token_from_env(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    return env.get("MLGATE_TOKEN") or None


def open_channel(
    address: str, tls: TLS | None, token: str | None, options: ChannelOptions
) -> grpc.Channel:
    """A channel to ``address``: TLS when ``tls`` is given, and every call carrying ``token``."""
    if tls is None:
        channel = grpc.insecure_channel(address, options=options)
    else:
        channel = grpc.secure_channel(address, tls.credentials(), options=options)
    if token:
        channel = grpc.intercept_channel(channel, _Bearer(token))
    return channel


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: tuple[tuple[str, str | bytes], ...] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


if TYPE_CHECKING:  # the stubs make these generic; at run time they are plain classes
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor[Any, Any]
    _UnaryStream = grpc.UnaryStreamClientInterceptor[Any, Any]
    _StreamUnary = grpc.StreamUnaryClientInterceptor[Any, Any]
    _StreamStream = grpc.StreamStreamClientInterceptor[Any, Any]
else:
    _UnaryUnary = grpc.UnaryUnaryClientInterceptor
    _UnaryStream = grpc.UnaryStreamClientInterceptor
    _StreamUnary = grpc.StreamUnaryClientInterceptor
    _StreamStream = grpc.StreamStreamClientInterceptor


class _Bearer(_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream):
    """Adds ``authorization: Bearer <token>`` to every call's metadata."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def __repr__(self) -> str:
        return "_Bearer(<token>)"

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        return _CallDetails(
            details.method,
            details.timeout,
            (*(details.metadata or ()), self._header),
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: Any, requests: Iterator[Any]
    ) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: Any, requests: Iterator[Any]
    ) -> Any:
        return continuation(self._details(details), requests)
