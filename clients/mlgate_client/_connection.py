"""How MLGateClient gets its connection: it waits for a gateway that is starting, says at once
when one listens whose TLS its settings do not match (``_diagnosis``), and turns failed calls into
the client's errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from mlgate_client._diagnosis import diagnose
from mlgate_client.errors import MLGateError, ServerUnreachable, TLSMismatch, from_rpc_error

if TYPE_CHECKING:
    from mlgate_client._security import TLS

__all__ = ["Connection"]

# A gateway that answers at once is connected well within this; past it, ``on_wait`` is told.
_PROMPT_CONNECT = 0.5

Resp = TypeVar("Resp")


class Connection:
    """Mixed into MLGateClient, which provides the channel, the settings and the timeouts."""

    if TYPE_CHECKING:
        address: str
        _channel: grpc.Channel
        _tls: TLS | None
        _timeout: float | None
        _connect_timeout: float
        _connected: bool
        _on_wait: Callable[[str], None] | None

    def wait_ready(self, timeout: float, on_wait: Callable[[str], None] | None = None) -> bool:
        """Whether a connection to the gateway is up within ``timeout`` seconds; ``on_wait`` is
        called with the address if it is not up at once. Raises ``TLSMismatch`` at once if a
        gateway listens there whose TLS this client's settings do not match."""
        # One future for the whole wait: it is woken by the channel's connectivity changes, and a
        # second subscription could leave gRPC's watcher thread polling a channel being closed.
        ready = grpc.channel_ready_future(self._channel)
        try:
            try:
                ready.result(timeout=min(_PROMPT_CONNECT, timeout))
            except grpc.FutureTimeoutError:
                self._check_tls()
                if on_wait is not None:
                    on_wait(self.address)
                ready.result(timeout=max(0.0, timeout - _PROMPT_CONNECT))
        except grpc.FutureTimeoutError:
            ready.cancel()
            return False
        except BaseException:
            ready.cancel()
            raise
        return True

    def _check_tls(self) -> None:
        """Raise ``TLSMismatch`` if what listens at the address and this client's TLS settings
        disagree (``_diagnosis``): no wait will mend that."""
        mismatch = diagnose(self.address, self._tls)
        if mismatch is not None:
            raise TLSMismatch(mismatch.message, mismatch.hints)

    def _explained(self, error: MLGateError) -> MLGateError:
        """``error``, or for a failure to connect, the TLS mismatch behind it if there is one."""
        if isinstance(error, ServerUnreachable) and not isinstance(error, TLSMismatch):
            try:
                self._check_tls()
            except TLSMismatch as mismatch:
                mismatch.__cause__ = error
                return mismatch
        return error

    def _connect(self) -> None:
        """Before the first call: wait for a gateway that is starting, within connect_timeout."""
        if self._connected:
            return
        if not self.wait_ready(self._connect_timeout, self._on_wait):
            raise self._explained(
                ServerUnreachable(
                    f"no mlgate gateway answers at {self.address} "
                    f"(waited {self._connect_timeout:g}s)",
                    "UNAVAILABLE",
                )
            )
        self._connected = True

    def _unary(self, method: Callable[..., Resp], request: Any) -> Resp:
        self._connect()
        try:
            return method(request, timeout=self._timeout)
        except grpc.RpcError as exc:
            raise self._explained(from_rpc_error(exc)) from exc
