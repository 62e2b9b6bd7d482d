"""mlgate's domain errors and the one table that maps them to gRPC status codes.

    MLGateError
    ├── InvalidField         INVALID_ARGUMENT   (names the offending field)
    ├── NotFound             NOT_FOUND
    ├── AlreadyExists        ALREADY_EXISTS
    ├── FailedPrecondition   FAILED_PRECONDITION
    ├── ResourceExhausted    RESOURCE_EXHAUSTED
    ├── PermissionDenied     PERMISSION_DENIED  (names the role needed)
    ├── Unavailable          UNAVAILABLE
    ├── DeadlineExceeded     DEADLINE_EXCEEDED
    ├── DataLoss             DATA_LOSS
    └── Internal             INTERNAL

What a client is told of any exception, these and the stores' alike, is decided in one place,
``mlgate.failures.public``: workers put its code name in a FAILED event, the gateway aborts RPCs
with it, and ``from_status`` turns a code and message reported by another process back into one
of these errors.
"""

from __future__ import annotations

__all__ = [
    "AlreadyExists",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidField",
    "MLGateError",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unavailable",
    "from_status",
]


class MLGateError(Exception):
    """Root of mlgate's errors; ``code`` is the gRPC status code name."""

    code = "UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidField(MLGateError):
    """A request field is wrong; the message names the field."""

    code = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotFound(MLGateError):
    code = "NOT_FOUND"


class AlreadyExists(MLGateError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(MLGateError):
    code = "FAILED_PRECONDITION"


class ResourceExhausted(MLGateError):
    code = "RESOURCE_EXHAUSTED"


class PermissionDenied(MLGateError):
    """A known caller whose token's role does not allow what it asked for."""

    code = "PERMISSION_DENIED"


class Unavailable(MLGateError):
    code = "UNAVAILABLE"


class DeadlineExceeded(MLGateError):
    code = "DEADLINE_EXCEEDED"


class DataLoss(MLGateError):
    code = "DATA_LOSS"


class Internal(MLGateError):
    code = "INTERNAL"


def from_status(code: str, message: str) -> MLGateError:
    """The error a status code name and message stand for (as a worker reports them)."""
    for kind in (NotFound, AlreadyExists, FailedPrecondition, ResourceExhausted, Unavailable,
                 DeadlineExceeded, DataLoss, Internal):  # fmt: skip
        if kind.code == code:
            return kind(message)
    error = MLGateError(message)
    error.code = code if code in _KNOWN_CODES else "INTERNAL"
    return error


_KNOWN_CODES = frozenset(
    {"INVALID_ARGUMENT", "CANCELLED", "UNKNOWN", "PERMISSION_DENIED", "ABORTED", "OUT_OF_RANGE",
     "UNIMPLEMENTED", "UNAUTHENTICATED"}
)  # fmt: skip
