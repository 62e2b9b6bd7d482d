"""The one mapping from an exception to what a client is told: a status code name and a message.

Every process that answers for mlgate calls ``public``: the gateway's edge (``server.error_mapping``,
for every RPC), a worker running a job (the job's FAILED event), its fit processes and its
inference server (each ``ModelInfer`` request's outcome). So a fault reads the same wherever it is
met: a missing bucket is FAILED_PRECONDITION "the object store (s3) is not set up as configured…"
whether the gateway or a job found it, and a worker's reply passes through the gateway unchanged.

``MLGateError`` carries its own code and a message written for the client. The brokers', job
stores' and object stores' error trees are mapped to messages that name the service that failed,
never its address, its credentials or a driver's text: those go to the log of the process that met
them, under the ``where`` it was given (an RPC method, a job). Anything else is a bug: INTERNAL,
with a reference that finds its traceback in that log.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from brokers.errors import BrokerError, BrokerUnavailable
from mlgate.errors import MLGateError
from mlgate.store_errors import JobStoreError, JobStoreUnavailable
from storage import describe_store
from storage.errors import (
    IntegrityError,
    ObjectNotFound,
    StorageError,
    StorageMisconfigured,
    StorageUnavailable,
)

__all__ = ["CODES", "MAX_MESSAGE_BYTES", "Backends", "Failure", "cap", "public"]

log = logging.getLogger(__name__)

#: Status messages travel in a header that clients refuse past 16 KB once percent-encoded
#: (up to 3 bytes for each byte of UTF-8); messages quote user input briefly anyway.
MAX_MESSAGE_BYTES = 2048

_AGAIN = "try again shortly"
# Process-neutral: the gateway and the workers tell the same story of one fault.
_ASK = "mlgate's logs say why; tell its operator"

# First match wins: subclasses before their roots. ``{service}`` names the store that failed,
# ``{detail}`` is the error's own text (mlgate's storage writes those for people).
_TABLE: list[tuple[type[Exception], str, str]] = [
    (BrokerUnavailable, "UNAVAILABLE", f"{{service}} is unreachable; {_AGAIN}"),
    (BrokerError, "UNAVAILABLE", f"{{service}} is not taking jobs; {_AGAIN}"),
    (JobStoreUnavailable, "UNAVAILABLE", f"{{service}} is unreachable; {_AGAIN}"),
    (JobStoreError, "INTERNAL", f"{{service}} failed; {_ASK}"),
    (ObjectNotFound, "NOT_FOUND", "{detail} is not in the object store"),
    # Model or dataset and key, never a server path.
    (IntegrityError, "DATA_LOSS", "{detail}"),
    (StorageUnavailable, "UNAVAILABLE", f"{{service}} is unreachable; {_AGAIN}"),
    (StorageMisconfigured, "FAILED_PRECONDITION", f"{{service}} is not set up as configured; {_ASK}"),
    (StorageError, "INTERNAL", f"{{service}} failed; {_ASK}"),
]  # fmt: skip


def _codes(kind: type[MLGateError]) -> set[str]:
    return {kind.code}.union(*(_codes(sub) for sub in kind.__subclasses__()))


#: Every code ``public`` answers with (``MLGateError``'s own UNKNOWN is never raised).
CODES: frozenset[str] = frozenset(
    {"INTERNAL", *(code for _, code, _ in _TABLE), *_codes(MLGateError)} - {"UNKNOWN"}
)


@dataclass(frozen=True, slots=True)
class Failure:
    """What a client is told: a gRPC status code name and a message of at most 2 KB."""

    code: str
    message: str


@dataclass(frozen=True)
class Backends:
    """What a deployment runs, as messages name it (never an address)."""

    broker: str
    job_store: str
    object_store: str

    @classmethod
    def of(cls, broker: str, storage_url: str, store_url: str | None = None) -> Backends:
        """The names of the backends a process uses: its broker's name, and those the URLs
        choose (only their schemes are read); no job store for a worker, which has none."""
        if store_url is None:
            return cls(broker, "", describe_store(storage_url))
        scheme = urlsplit(store_url).scheme
        job_store = {"rediss": "redis", "postgres": "postgresql"}.get(scheme, scheme)
        return cls(broker, job_store or "sqlite", describe_store(storage_url))

    def service(self, exc: BaseException) -> str:
        """The service an error of the brokers', job stores' or object stores' trees came from,
        as messages name it: "the object store (s3)"."""
        if isinstance(exc, BrokerError):
            return f"the job broker ({self.broker})"
        if isinstance(exc, JobStoreError):
            return f"the job store ({self.job_store})"
        if isinstance(exc, StorageError):
            return f"the object store ({self.object_store})"
        raise TypeError(f"no service raises {type(exc).__name__}")


def cap(message: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """``message`` cut to ``limit`` bytes of UTF-8, saying that it was cut."""
    data = message.encode()
    if len(data) <= limit:
        return message
    return data[: limit - 32].decode(errors="ignore") + f"… (cut from {len(data)} bytes)"


def public(exc: BaseException, backends: Backends, where: str) -> Failure:
    """What a client is told of ``exc``, met while serving ``where`` (an RPC method, a job);
    what it is not told (a driver's text, a traceback) goes to this process's log."""
    if isinstance(exc, MLGateError):
        return Failure(exc.code, cap(exc.message))
    for kind, code, template in _TABLE:
        if isinstance(exc, kind):
            log.warning("%s: %s: %s", where, type(exc).__name__, exc)
            service = backends.service(exc)
            return Failure(code, cap(template.format(service=service, detail=exc)))
    ref = uuid.uuid4().hex[:12]
    log.error("%s: unexpected error (ref %s)", where, ref, exc_info=exc)
    return Failure("INTERNAL", f"internal error (ref {ref}); {_ASK}")
