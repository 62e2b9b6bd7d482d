"""Training as plain functions: a validated plan and a DataFrame in, a fitted model and metrics out."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sklearn import metrics as sk_metrics
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlgate.errors import FailedPrecondition, InvalidArgument
from mlgate.quoting import listing, quote
from mlgate.v1 import datasets_pb2, jobs_pb2
from workers.estimators import CLASSIFICATION, ESTIMATORS, REGRESSION, build
from workers.parallelism import cap_jobs
from workers.prediction import plain

__all__ = ["Plan", "Trained", "fit", "infer_task", "metrics_for", "plan"]

DEFAULT_TEST_SIZE = 0.2
DEFAULT_SEED = 42
# An integer target with at most this many distinct values is read as class labels.
_MAX_INTEGER_CLASSES = 20

Progress = Callable[[int, float], None]


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


@dataclass(frozen=True)
class Trained:
    estimator: BaseEstimator
    task: str
    params: dict[str, Any]
    metrics: dict[str, float]
    train_rows: int
    test_rows: int
    classes: list[Any]


_TASKS = {jobs_pb2.TASK_REGRESSION: REGRESSION, jobs_pb2.TASK_CLASSIFICATION: CLASSIFICATION}


def plan(
    request: jobs_pb2.TrainRequest, schema: datasets_pb2.Dataset, params: Mapping[str, Any]
) -> Plan:
    """Check a request against the dataset's columns; raises InvalidArgument naming the field."""
    columns = {c.name: c.dtype for c in schema.columns}
    if not request.target:
        raise InvalidArgument("target", "is required: name the column to predict")
    if request.target not in columns:
        raise InvalidArgument(
            "target",
            f"{quote(request.target)} is not a column of {schema.id}; columns: {listing(columns)}",
        )
    features = tuple(request.features) or tuple(c for c in columns if c != request.target)
    for i, name in enumerate(features):
        if name not in columns:
            raise InvalidArgument(f"features[{i}]", f"{quote(name)} is not a column of {schema.id}")
        if name == request.target:
            raise InvalidArgument(f"features[{i}]", "the target cannot also be a feature")
    if len(set(features)) != len(features):
        raise InvalidArgument("features", "lists a column twice")
    test_size = request.test_size if request.HasField("test_size") else DEFAULT_TEST_SIZE
    if not 0.0 < test_size < 1.0 or math.isnan(test_size):
        raise InvalidArgument("test_size", f"must be between 0 and 1 (exclusive), not {test_size}")
    # The split scikit-learn will make: both sides need a row, or the job fails in the worker.
    test_rows = math.ceil(test_size * schema.rows)
    if schema.rows and not 1 <= test_rows < schema.rows:
        raise InvalidArgument(
            "test_size",
            f"{test_size} of {schema.id}'s {schema.rows} rows leaves {schema.rows - test_rows} to "
            f"train on and {test_rows} to test; choose one that leaves at least one row for each",
        )
    seed = request.random_seed if request.HasField("random_seed") else DEFAULT_SEED
    if not 0 <= seed < 2**32:
        raise InvalidArgument("random_seed", "must be between 0 and 2**32 - 1")
    target_dtype = columns[request.target]
    task = _TASKS.get(request.task, "")
    if request.task and not task:
        raise InvalidArgument("task", f"unknown task {request.task}")
    if not task and target_dtype != "integer":
        task = REGRESSION if target_dtype == "numeric" else CLASSIFICATION
    if task == REGRESSION and target_dtype in ("string", "boolean"):
        raise InvalidArgument(
            "task", f"regression needs a numeric target; {request.target} is {target_dtype}"
        )
    result = Plan(
        dataset_id=schema.id,
        features=features,
        dtypes={name: columns[name] for name in features},
        target=request.target,
        target_dtype=target_dtype,
        estimator=request.estimator or "random_forest",
        task=task,
        params=dict(params),
        test_size=test_size,
        seed=seed,
    )
    # Validate the estimator and its hyperparameters now: for the task if known, else for a task
    # the estimator supports (an integer target's task is inferred from its values later).
    spec = ESTIMATORS.get(result.estimator)
    fallback = CLASSIFICATION if spec is None or CLASSIFICATION in spec.classes else REGRESSION
    build(result.estimator, task or fallback, result.params, seed)
    return result


def infer_task(target: pd.Series) -> str:
    """Regression for real numbers, classification for labels and few distinct integers."""
    kind = target.dtype.kind
    if kind == "f":
        return REGRESSION
    if kind in "iu" and target.nunique() > _MAX_INTEGER_CLASSES:
        return REGRESSION
    return CLASSIFICATION


def _with_encoding(estimator: BaseEstimator, dtypes: Mapping[str, str]) -> BaseEstimator:
    categorical = [name for name, dtype in dtypes.items() if dtype in ("string", "boolean")]
    if not categorical:
        return estimator
    encode = ColumnTransformer(
        [("categorical", OneHotEncoder(handle_unknown="ignore"), categorical)],
        remainder="passthrough",
    )
    return Pipeline([("encode", encode), ("estimator", estimator)])


def fit(frame: pd.DataFrame, plan: Plan, progress: Progress, *, cores: int = 1) -> Trained:
    """Split, fit and evaluate as the plan says; ``progress(stage, fraction)`` reports each step.
    Parallelism parameters are capped at ``cores``, and the model's record says so."""
    missing = [c for c in (*plan.features, plan.target) if c not in frame.columns]
    if missing:
        raise FailedPrecondition(f"dataset {plan.dataset_id} no longer has the columns {missing}")
    data = frame[[*plan.features, plan.target]]
    if data.isna().to_numpy().any():
        bad = [str(c) for c in data.columns if data[c].isna().any()]
        raise InvalidArgument(
            "features", f"columns with missing values cannot be used: {listing(bad)}"
        )
    X, y = data[list(plan.features)], data[plan.target]
    task = plan.task or infer_task(y)
    estimator, params = build(plan.estimator, task, plan.params, plan.seed)
    model = _with_encoding(estimator, plan.dtypes)
    params.update(cap_jobs(estimator, cores))
    cap_jobs(model, cores)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=plan.test_size, random_state=plan.seed
    )
    if len(X_train) == 0 or len(X_test) == 0:
        raise InvalidArgument("test_size", f"leaves no rows to train or test on ({len(X)} rows)")
    if task == CLASSIFICATION and y_train.nunique() < 2:
        raise FailedPrecondition("classification needs at least two classes in the training rows")
    progress(jobs_pb2.STAGE_FITTING, 0.2)
    model.fit(X_train, y_train)
    progress(jobs_pb2.STAGE_EVALUATING, 0.8)
    scores = metrics_for(model, task, X_test, y_test)
    classes = [plain(c) for c in getattr(model, "classes_", [])]
    return Trained(model, task, params, scores, len(X_train), len(X_test), classes)


def metrics_for(model: Any, task: str, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Holdout metrics: rmse, mae, r2; or accuracy, f1_macro, and roc_auc, log_loss where defined."""
    predicted = model.predict(X)
    if task == REGRESSION:
        return {
            "rmse": float(math.sqrt(sk_metrics.mean_squared_error(y, predicted))),
            "mae": float(sk_metrics.mean_absolute_error(y, predicted)),
            "r2": float(sk_metrics.r2_score(y, predicted)),
        }
    scores = {
        "accuracy": float(sk_metrics.accuracy_score(y, predicted)),
        "f1_macro": float(sk_metrics.f1_score(y, predicted, average="macro")),
    }
    labels = list(getattr(model, "classes_", []))
    # Log loss and ROC AUC are undefined for holdout labels the model never saw in training.
    if hasattr(model, "predict_proba") and set(y.unique()) <= set(labels):
        proba = model.predict_proba(X)
        scores["log_loss"] = float(sk_metrics.log_loss(y, proba, labels=labels))
        if y.nunique() == len(labels) and len(labels) >= 2:
            # ROC AUC needs every class present in the holdout; otherwise it is undefined.
            if len(labels) == 2:
                scores["roc_auc"] = float(sk_metrics.roc_auc_score(y, proba[:, 1]))
            else:
                scores["roc_auc"] = float(
                    sk_metrics.roc_auc_score(y, proba, multi_class="ovr", labels=labels)
                )
    return scores
