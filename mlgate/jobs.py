"""What the gateway and the workers agree on about a job's request, held in one place both import.

The gateway refuses a bad request here before it is queued; the worker checks the same way again
before running it (the dataset or model may have changed meanwhile). Nothing here imports
scikit-learn, pandas or numpy: the gateway only routes jobs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2

from mlgate.blanks import MAX_MAGNITUDE, Impute, parse_impute
from mlgate.errors import InvalidField
from mlgate.estimators import CLASSIFICATION, DEFAULT_ESTIMATOR, ESTIMATORS, REGRESSION
from mlgate.estimators import hyperparameters as check_hyperparameters
from mlgate.quoting import listing, quote, quote_value
from mlgate.v1 import datasets_pb2, jobs_pb2

__all__ = [
    "DEFAULT_SEED",
    "DEFAULT_TEST_SIZE",
    "MAX_MAGNITUDE",
    "MODEL_SHA_HEADER",
    "Plan",
    "from_struct",
    "plan",
]

# A predict job's header: the artifact digest the gateway validated the rows against, so a worker
# with an older copy of the model cached reloads it.
MODEL_SHA_HEADER = "model-sha256"

DEFAULT_TEST_SIZE = 0.2
DEFAULT_SEED = 42

_TASKS = {jobs_pb2.TASK_REGRESSION: REGRESSION, jobs_pb2.TASK_CLASSIFICATION: CLASSIFICATION}


def from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as Python values. Unlike ``json_format.MessageToDict`` it keeps NaN and infinity
    (a binary client can send them), so the checks can refuse them naming the field."""
    return {key: _value(value) for key, value in struct.fields.items()}


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return from_struct(value.struct_value)
    if kind == "list_value":
        return [_value(v) for v in value.list_value.values]
    if kind is None or kind == "null_value":
        return None
    return getattr(value, kind)


@dataclass(frozen=True)
class Plan:
    """A training request resolved against its dataset's schema."""

    dataset_id: str
    features: tuple[str, ...]
    dtypes: Mapping[str, str]
    target: str
    target_dtype: str
    estimator: str
    task: str  # "" while it can only be inferred from the data
    params: Mapping[str, Any]
    test_size: float
    seed: int
    #: How blanks in the features are filled (``TrainRequest.impute``); None: they are not.
    impute: Impute | None = None


def plan(request: jobs_pb2.TrainRequest, schema: datasets_pb2.Dataset) -> Plan:
    """Check a request against the dataset's columns; raises InvalidField naming the field."""
    columns = {c.name: c.dtype for c in schema.columns}
    if not request.target:
        raise InvalidField("target", "is required: name the column to predict")
    if request.target not in columns:
        raise InvalidField(
            "target",
            f"{quote(request.target)} is not a column of {schema.id}; columns: {listing(columns)}",
        )
    for i, name in enumerate(request.features):
        if name not in columns:
            raise InvalidField(f"features[{i}]", f"{quote(name)} is not a column of {schema.id}")
        if name == request.target:
            raise InvalidField(f"features[{i}]", "the target cannot also be a feature")
    if len(set(request.features)) != len(request.features):
        raise InvalidField("features", "lists a column twice")
    for i, name in enumerate(request.exclude):
        if name not in columns:
            raise InvalidField(
                f"exclude[{i}]",
                f"{quote(name)} is not a column of {schema.id}; columns: {listing(columns)}",
            )
    chosen = request.features or [c for c in columns if c != request.target]
    excluded = set(request.exclude)
    features = tuple(name for name in chosen if name not in excluded)
    if not features:
        raise InvalidField("exclude", "leaves no feature to train on")
    test_size = request.test_size if request.HasField("test_size") else DEFAULT_TEST_SIZE
    if not 0.0 < test_size < 1.0 or math.isnan(test_size):
        raise InvalidField("test_size", f"must be between 0 and 1 (exclusive), not {test_size}")
    # The split scikit-learn will make: both sides need a row, or the job fails in the worker.
    test_rows = math.ceil(test_size * schema.rows)
    if schema.rows and not 1 <= test_rows < schema.rows:
        raise InvalidField(
            "test_size",
            f"{test_size} of {schema.id}'s {schema.rows} rows leaves {schema.rows - test_rows} to "
            f"train on and {test_rows} to test; choose one that leaves at least one row for each",
        )
    if request.HasField("timeout_seconds") and not request.timeout_seconds > 0:
        raise InvalidField(
            "timeout_seconds",
            f"must be a number of seconds above 0, not {quote_value(request.timeout_seconds)}",
        )
    seed = request.random_seed if request.HasField("random_seed") else DEFAULT_SEED
    if not 0 <= seed < 2**32:
        raise InvalidField("random_seed", "must be between 0 and 2**32 - 1")
    target_dtype = columns[request.target]
    task = _TASKS.get(request.task, "")
    if request.task and not task:
        raise InvalidField("task", f"unknown task {request.task}")
    if not task and target_dtype != "integer":
        task = REGRESSION if target_dtype == "numeric" else CLASSIFICATION
    if task == REGRESSION and target_dtype in ("string", "boolean"):
        raise InvalidField(
            "task", f"regression needs a numeric target; {request.target} is {target_dtype}"
        )
    estimator = request.estimator or DEFAULT_ESTIMATOR
    params = from_struct(request.params) if request.HasField("params") else {}
    # Check the estimator and its hyperparameters now: for the task if known, else for a task
    # the estimator supports (an integer target's task is inferred from its values later).
    spec = ESTIMATORS.get(estimator)
    fallback = CLASSIFICATION if spec is None or CLASSIFICATION in spec.classes else REGRESSION
    check_hyperparameters(estimator, task or fallback, params, seed)
    dtypes = {name: columns[name] for name in features}
    return Plan(
        dataset_id=schema.id,
        features=features,
        dtypes=dtypes,
        target=request.target,
        target_dtype=target_dtype,
        estimator=estimator,
        task=task,
        params=params,
        test_size=test_size,
        seed=seed,
        impute=parse_impute(request.impute, dtypes),
    )
