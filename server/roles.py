"""The role each RPC needs when the gateway has a tokens file.

Every method the gateway serves is either in ``METHOD_ROLES`` or in ``OPEN``; a method in neither
needs ``admin`` (a new RPC is locked down, not left open), and
``tests/security/test_roles.py`` fails until it is given its role here.

To add an RPC: add its full name (``/package.Service/Method``) to ``METHOD_ROLES`` with the least
role that should call it, following the rule of the roles: ``read`` looks (get, list, watch,
model metadata, status), ``predict`` uses models, ``train`` creates jobs, models and datasets and
changes its own (``server/ownership.py`` checks whose it is: the owner or admin), ``admin``
changes anyone's and moves what every caller relies on (aliases). For example, when the
KServe inference protocol is served:

    "/inference.GRPCInferenceService/ModelInfer": Role.PREDICT,
    "/inference.GRPCInferenceService/ModelMetadata": Role.READ,
    "/inference.GRPCInferenceService/ServerLive": Role.READ,

and the role-matrix test checks the new entries through grpcurl at once.
"""

from __future__ import annotations

from types import MappingProxyType

from mlgate.tokens import Role

__all__ = ["METHOD_ROLES", "OPEN", "required_role"]

_JOBS = "/mlgate.v1.JobService/"
_MODELS = "/mlgate.v1.ModelService/"
_DATASETS = "/mlgate.v1.DatasetService/"
_STATUS = "/mlgate.v1.StatusService/"
_INFERENCE = "/inference.GRPCInferenceService/"

METHOD_ROLES = MappingProxyType(
    {
        _JOBS + "GetJob": Role.READ,
        _JOBS + "ListJobs": Role.READ,
        _JOBS + "WatchJob": Role.READ,
        _JOBS + "Predict": Role.PREDICT,
        _JOBS + "Train": Role.TRAIN,
        # A search trains: its trials fit on the workers and its refit registers a model.
        _JOBS + "Search": Role.TRAIN,
        # A scoring job writes a dataset, as an upload does.
        _JOBS + "Score": Role.TRAIN,
        # Cancelling another caller's job needs admin; see server/ownership.py.
        _JOBS + "CancelJob": Role.TRAIN,
        _MODELS + "GetModel": Role.READ,
        _MODELS + "ListModels": Role.READ,
        # One number per feature, as /metrics shows them: no training data.
        _MODELS + "GetModelDrift": Role.READ,
        # Counts, agreement and latencies of two versions' answers: no inputs, no outputs.
        _MODELS + "GetShadowComparison": Role.READ,
        # Exporting, updating and deleting a model also need its owner or admin; see
        # server/ownership.py. The artifact, enough to run the model elsewhere, is the owner's.
        _MODELS + "ExportModel": Role.PREDICT,
        _MODELS + "UpdateModel": Role.TRAIN,
        _MODELS + "DeleteModel": Role.TRAIN,
        # An alias moves what every caller of a name gets.
        _MODELS + "SetModelAlias": Role.ADMIN,
        _MODELS + "DeleteModelAlias": Role.ADMIN,
        _DATASETS + "GetDataset": Role.READ,
        _DATASETS + "ListDatasets": Role.READ,
        # An uploaded dataset's data also needs its owner, admin or +all; see
        # server/dataset_download.py.
        _DATASETS + "DownloadDataset": Role.READ,
        # Replacing (replace=true) or deleting a dataset also needs its owner or admin.
        _DATASETS + "UploadDataset": Role.TRAIN,
        _DATASETS + "DeleteDataset": Role.TRAIN,
        _STATUS + "GetStatus": Role.READ,
        _STATUS + "ListWorkers": Role.READ,
        # The Open Inference Protocol: inference uses models, the rest looks.
        _INFERENCE + "ModelInfer": Role.PREDICT,
        _INFERENCE + "ServerLive": Role.READ,
        _INFERENCE + "ServerReady": Role.READ,
        _INFERENCE + "ServerMetadata": Role.READ,
        _INFERENCE + "ModelReady": Role.READ,
        _INFERENCE + "ModelMetadata": Role.READ,
    }
)

#: Methods anyone may call, token or not: orchestrators' health checks, and reflection (which
#: lists the API, not its data).
OPEN = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)


def required_role(method: str) -> Role | None:
    """The role ``method`` needs; None for an open one; admin for one nobody gave a role."""
    if method in OPEN:
        return None
    return METHOD_ROLES.get(method, Role.ADMIN)
