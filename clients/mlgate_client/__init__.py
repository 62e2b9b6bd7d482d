"""mlgate's Python client and the ``mlgate`` command line.

from mlgate_client import MLGateClient

with MLGateClient("localhost:50051") as client:
    result = client.train("diabetes", target="target")
    print(result.model_id, result.metrics)
"""

import os
import sys

# gRPC's C core logs every failed handshake to stderr, at INFO, each time it tries again; the client
# says what went wrong itself (``_diagnosis``). Read when grpc is first imported: too late after.
if "grpc" not in sys.modules:
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from mlgate_client._security import TLS
from mlgate_client.client import DEFAULT_ADDRESS, MLGateClient, Page
from mlgate_client.errors import (
    AlreadyExists,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    JobCancelled,
    JobError,
    JobFailed,
    MLGateError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServerUnreachable,
    TLSMismatch,
    Unauthenticated,
    Unavailable,
)
from mlgate_client.results import Column, Dataset, Job, Model, PredictResult, TrainResult

__all__ = [
    "DEFAULT_ADDRESS",
    "TLS",
    "AlreadyExists",
    "Column",
    "DataLoss",
    "Dataset",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "Job",
    "JobCancelled",
    "JobError",
    "JobFailed",
    "MLGateClient",
    "MLGateError",
    "Model",
    "NotFound",
    "Page",
    "PermissionDenied",
    "PredictResult",
    "ResourceExhausted",
    "ServerUnreachable",
    "TLSMismatch",
    "TrainResult",
    "Unauthenticated",
    "Unavailable",
]
