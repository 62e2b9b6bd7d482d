"""How the command line reports a failure: ``error: CODE: message`` and a hint that fits what
went wrong, or with ``--json`` one JSON object (code, message, field) on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from mlgate_client.client import DEFAULT_ADDRESS
from mlgate_client.errors import (
    InvalidArgument,
    JobError,
    MLGateError,
    ServerUnreachable,
    TLSMismatch,
    Unavailable,
)

__all__ = ["LOCAL_HOSTS", "Failure", "hints", "report"]

# Hosts that mean "this machine", as an address to call or to listen on.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0", "::", ""})
_DISTRIBUTED_BROKERS = {"rabbitmq", "redis"}


@dataclass(frozen=True)
class Failure:
    """What one failed command says: a status code name, a message, and what may help."""

    code: str
    message: str
    field: str | None = None
    job_id: str | None = None
    hints: tuple[str, ...] = ()

    @classmethod
    def of(cls, error: MLGateError, address: str, env: Mapping[str, str]) -> Failure:
        # A job's own INVALID_ARGUMENT names the field the same way the gateway's does.
        field = InvalidArgument(error.message).field if error.code == "INVALID_ARGUMENT" else ""
        job_id = error.job_id if isinstance(error, JobError) else None
        return cls(
            error.code,
            error.message,
            field=field or None,
            job_id=job_id,
            hints=hints(error, address, env),
        )

    def text(self) -> str:
        line = f"error: {self.code}: {self.message}"
        if self.job_id:
            line += f" (job {self.job_id})"
        return "\n".join([line, *(f"hint: {hint}" for hint in self.hints)])

    def json(self) -> str:
        body: dict[str, str | list[str] | None] = {
            "code": self.code,
            "message": self.message,
            "field": self.field,
        }
        if self.job_id:
            body["job_id"] = self.job_id
        if self.hints:
            body["hints"] = list(self.hints)
        return json.dumps({"error": body}, sort_keys=True)


def report(failure: Failure, as_json: bool) -> None:
    print(failure.json() if as_json else failure.text(), file=sys.stderr, flush=True)


def hints(error: MLGateError, address: str, env: Mapping[str, str]) -> tuple[str, ...]:
    """What to do next, for the errors where the message alone does not say."""
    if isinstance(error, TLSMismatch):
        return error.hints
    if isinstance(error, ServerUnreachable):
        return (
            _no_gateway_hint(address, env),
            "a gateway that serves TLS needs --tls (or MLGATE_TLS=1) and MLGATE_TLS_CA",
        )
    if isinstance(error, Unavailable):
        return (
            f"the gateway at {address} answers but cannot reach its broker or storage now; "
            "retry once they are back",
        )
    if error.code == "UNAUTHENTICATED":
        return ("this gateway wants a token: set MLGATE_TOKEN (or pass --token)",)
    return ()


def _no_gateway_hint(address: str, env: Mapping[str, str]) -> str:
    if "," in address:
        return "check the addresses (--address / MLGATE_ADDRESS) and that gateways run there"
    host = urlsplit(f"//{address}").hostname or ""
    if host not in LOCAL_HOSTS:
        return f"check the address (--address / MLGATE_ADDRESS) and that a gateway runs at {host}"
    port = "" if address == DEFAULT_ADDRESS else f" --port {address.rsplit(':', 1)[-1]}"
    elsewhere = "or point --address / MLGATE_ADDRESS at a running one"
    broker = env.get("MLGATE_BROKER", "")
    if broker in _DISTRIBUTED_BROKERS:
        return (
            f"start a gateway with `mlgate gateway{port}` and workers with `mlgate worker` "
            f"(MLGATE_BROKER={broker} for both), {elsewhere}"
        )
    return (
        f"start one with `mlgate serve{port}` (a gateway and workers in one process), or "
        f"`mlgate gateway{port}` and `mlgate worker` on a shared broker; {elsewhere}"
    )
