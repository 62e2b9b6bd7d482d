"""The client's error tree and the one table that maps gRPC status codes onto it.

    MLGateError                  any failure the server reported; ``code`` is the status code name
    ├── InvalidArgument          INVALID_ARGUMENT (``field`` names the offending request field)
    ├── NotFound                 NOT_FOUND
    ├── AlreadyExists            ALREADY_EXISTS
    ├── FailedPrecondition       FAILED_PRECONDITION
    ├── ResourceExhausted        RESOURCE_EXHAUSTED
    ├── DeadlineExceeded         DEADLINE_EXCEEDED (the client's ``timeout`` ran out)
    ├── Unavailable              UNAVAILABLE
    │   └── ServerUnreachable    no connection to the gateway at all
    │       └── TLSMismatch      one listens, but its TLS and the client's settings disagree
    ├── DataLoss                 DATA_LOSS
    ├── Unauthenticated          UNAUTHENTICATED (no token, or one the gateway does not know)
    ├── PermissionDenied         PERMISSION_DENIED (the token's role does not allow the call)
    ├── Internal                 INTERNAL, UNKNOWN
    └── JobError                 the RPC worked but the job did not succeed
        ├── JobFailed            the job ended FAILED; ``code`` is the job's error code
        └── JobCancelled         the job ended CANCELLED

Any other status code raises ``MLGateError`` itself with that code.
"""

from __future__ import annotations

import grpc

__all__ = [
    "AlreadyExists",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "MLGateError",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "ServerUnreachable",
    "TLSMismatch",
    "Unauthenticated",
    "Unavailable",
    "error_for_code",
    "from_rpc_error",
]


class MLGateError(Exception):
    """Root of the client's errors: ``code`` is a gRPC status code name, ``message`` the detail."""

    def __init__(self, message: str, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidArgument(MLGateError):
    """A request field is wrong; the server's message starts with the field's name."""

    @property
    def field(self) -> str:
        head, sep, _ = self.message.partition(": ")
        return head if sep and " " not in head else ""


class NotFound(MLGateError):
    """The job, model or dataset does not exist."""


class AlreadyExists(MLGateError):
    """The thing to create already exists (for example a built-in dataset's id)."""


class FailedPrecondition(MLGateError):
    """The request is valid but not now (for example cancelling a job that has ended)."""


class ResourceExhausted(MLGateError):
    """A limit was hit: too many rows, a message too large."""


class DeadlineExceeded(MLGateError):
    """The call took longer than the client's timeout."""


class Unavailable(MLGateError):
    """The gateway or something behind it (broker, storage) is down; retrying later may work."""


class ServerUnreachable(Unavailable):
    """No connection could be made to the gateway's address."""


class TLSMismatch(ServerUnreachable):
    """A gateway listens at the address, but no connection can be made with this client's TLS
    settings: it serves TLS and the client asks for none, or the other way round, or one side
    does not trust the other's certificate. ``hints`` name the settings to change."""

    def __init__(self, message: str, hints: tuple[str, ...] = ()) -> None:
        super().__init__(message, "UNAVAILABLE")
        self.hints = hints


class DataLoss(MLGateError):
    """Stored data failed its integrity check."""


class Internal(MLGateError):
    """The server failed unexpectedly."""


class JobError(MLGateError):
    """A job did not succeed; ``job_id`` says which."""

    def __init__(self, message: str, code: str, job_id: str) -> None:
        super().__init__(message, code)
        self.job_id = job_id


class Unauthenticated(MLGateError):
    """The gateway wants a token (``MLGATE_TOKEN``) and got none, or one it does not know."""


class PermissionDenied(MLGateError):
    """The token is known but its role does not allow the call; the message names the role."""


class JobFailed(JobError):
    """The job ended FAILED; ``code`` and ``message`` are the job's recorded error."""


class JobCancelled(JobError):
    """The job ended CANCELLED."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message, "CANCELLED", job_id)


# The one table from status codes to classes; any other code raises MLGateError itself. The
# server's side holds every code its error mapping answers with to a class here (a test checks).
_BY_CODE: dict[grpc.StatusCode, type[MLGateError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DATA_LOSS: DataLoss,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNKNOWN: Internal,
}

# What grpc-core says when no transport could be set up; an UNAVAILABLE the server itself sends
# (broker or storage down) never contains these.
_CONNECT_FAILURES = (
    "failed to connect to all addresses",
    "connections to all backends failing",
    "connection refused",
    "dns resolution",
)


def error_for_code(code: str, message: str) -> MLGateError:
    """The typed error for a status code name."""
    status = grpc.StatusCode.__members__.get(code)
    cls = MLGateError if status is None else _BY_CODE.get(status, MLGateError)
    if cls is Unavailable and any(hint in message.lower() for hint in _CONNECT_FAILURES):
        cls = ServerUnreachable
    return cls(message, code)


def from_rpc_error(exc: grpc.RpcError) -> MLGateError:
    """The typed error for a failed call."""
    if isinstance(exc, grpc.Call):
        return error_for_code(exc.code().name, exc.details() or "")
    return MLGateError(str(exc))
