"""The one table from errors to gRPC statuses, applied at the edge by ``ErrorInterceptor``.

``MLGateError`` carries its own code and a message written for the client. The brokers', job
stores' and object stores' trees are mapped here to messages that name the service that failed,
never its address, its credentials or a driver's text: those go to the gateway's log. Anything
else is a bug: INTERNAL, with a reference that finds its traceback in the log.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import grpc

from brokers.errors import BrokerError, BrokerUnavailable
from mlgate.errors import MLGateError
from mlgate.settings import Settings
from server.jobstore.errors import JobStoreError, JobStoreUnavailable
from storage import describe_store
from storage.errors import (
    IntegrityError,
    ObjectNotFound,
    StorageError,
    StorageMisconfigured,
    StorageUnavailable,
)

__all__ = ["MAX_MESSAGE_BYTES", "Backends", "cap", "translate"]

log = logging.getLogger(__name__)

#: Status messages travel in a header that clients refuse past 16 KB once percent-encoded
#: (up to 3 bytes for each byte of UTF-8); messages quote user input briefly anyway.
MAX_MESSAGE_BYTES = 2048

_AGAIN = "try again shortly"
_ASK = "the gateway's log says why; tell its operator"

Code = grpc.StatusCode

# First match wins: subclasses before their roots.
_TABLE: list[tuple[type[Exception], grpc.StatusCode, str]] = [
    (BrokerUnavailable, Code.UNAVAILABLE, f"the job broker ({{broker}}) is unreachable; {_AGAIN}"),
    (BrokerError, Code.UNAVAILABLE, f"the job broker ({{broker}}) is not taking jobs; {_AGAIN}"),
    (JobStoreUnavailable, Code.UNAVAILABLE, f"the job store ({{job_store}}) is unreachable; {_AGAIN}"),
    (JobStoreError, Code.INTERNAL, f"the job store ({{job_store}}) failed; {_ASK}"),
    (ObjectNotFound, Code.NOT_FOUND, "{detail} is not in the object store"),
    # Written by mlgate's storage for people: model or dataset and key, never a server path.
    (IntegrityError, Code.DATA_LOSS, "{detail}"),
    (StorageUnavailable, Code.UNAVAILABLE, f"the object store ({{object_store}}) is unreachable; {_AGAIN}"),
    (StorageMisconfigured, Code.FAILED_PRECONDITION, f"the object store ({{object_store}}) is not set up as configured; {_ASK}"),
    (StorageError, Code.INTERNAL, f"the object store ({{object_store}}) failed; {_ASK}"),
]  # fmt: skip


@dataclass(frozen=True)
class Backends:
    """What a deployment runs, as status messages name it."""

    broker: str
    job_store: str
    object_store: str

    @classmethod
    def of(cls, settings: Settings) -> Backends:
        """The names of the backends ``settings`` choose; only URL schemes are read."""
        scheme = urlsplit(settings.store_url).scheme
        job_store = {"rediss": "redis", "postgres": "postgresql"}.get(scheme, scheme)
        return cls(settings.broker, job_store or "sqlite", describe_store(settings.storage_url))


def cap(message: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """``message`` cut to ``limit`` bytes of UTF-8, saying that it was cut."""
    data = message.encode()
    if len(data) <= limit:
        return message
    return data[: limit - 32].decode(errors="ignore") + f"… (cut from {len(data)} bytes)"


def translate(exc: Exception, backends: Backends, method: str) -> tuple[grpc.StatusCode, str]:
    """The status code and message for an exception raised while serving ``method``; logs what
    the client is not told."""
    if isinstance(exc, MLGateError):
        return grpc.StatusCode[exc.code], cap(exc.message)
    for kind, code, template in _TABLE:
        if isinstance(exc, kind):
            log.warning("%s: %s: %s", method, type(exc).__name__, exc)
            names = {
                "broker": backends.broker,
                "job_store": backends.job_store,
                "object_store": backends.object_store,
            }
            return code, cap(template.format(detail=exc, **names))
    ref = uuid.uuid4().hex[:12]
    log.error("%s: unexpected error (ref %s)", method, ref, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error (ref {ref}); {_ASK}"
