"""Training as plain functions: a checked plan (``mlgate.jobs.plan``) and a DataFrame in, a fitted
model and metrics out."""

from __future__ import annotations

import math
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pandas as pd
from sklearn import config_context
from sklearn import metrics as sk_metrics
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mlgate.errors import FailedPrecondition, InvalidField
from mlgate.estimators import CLASSIFICATION, ESTIMATORS, REGRESSION
from mlgate.jobs import Plan
from mlgate.quoting import listing
from mlgate.v1 import jobs_pb2, models_pb2
from workers import imputation
from workers.estimators import build
from workers.evaluation import evaluate_frame
from workers.fitprogress import fit_reporting
from workers.parallelism import cap_jobs
from workers.reference import reference
from workers.values import plain

__all__ = ["Trained", "fit", "identifiers", "infer_task", "metrics_for"]

# An integer target with at most this many distinct values is read as class labels.
_MAX_INTEGER_CLASSES = 20

Progress = Callable[[int, float], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Trained:
    estimator: BaseEstimator
    task: str
    params: dict[str, Any]
    metrics: dict[str, float]
    train_rows: int
    test_rows: int
    classes: list[Any]
    #: Seconds spent in the estimator's fit and the holdout scoring, nothing around them.
    fit_seconds: float = 0.0
    #: Each feature's fill value, for a model trained with ``impute`` (``workers.imputation``).
    imputed: Mapping[str, Any] = field(default_factory=dict)
    #: What a person should know about the model (a feature like an identifier).
    warnings: list[str] = field(default_factory=list)
    #: Each feature's distribution in the training part, as it came (``workers.reference``).
    reference: Mapping[str, models_pb2.FeatureReference] = field(default_factory=dict)


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
    # Blanks in the target never train; in the features, imputed or by estimators that handle
    # them.
    if data[plan.target].isna().any():
        raise InvalidField("target", f"column {plan.target} has missing values")
    if (
        plan.impute is None
        and not ESTIMATORS[plan.estimator].missing_values
        and data.isna().to_numpy().any()
    ):
        bad = [str(c) for c in data.columns if data[c].isna().any()]
        handles = [name for name, spec in ESTIMATORS.items() if spec.missing_values]
        raise InvalidField(
            "features",
            f"columns with missing values cannot be used by {plan.estimator}: {listing(bad)}; "
            f"fill them as they train (impute: mlgate train --impute median, mean, "
            f"most_frequent or constant:VALUE), or use an estimator that handles them: "
            f"{listing(handles)}",
        )
    X, y = data[list(plan.features)], data[plan.target]
    task = plan.task or infer_task(y)
    estimator, params = build(plan.estimator, task, plan.params, plan.seed)
    model = _with_encoding(estimator, plan.dtypes)
    params.update(cap_jobs(estimator, cores))
    cap_jobs(model, cores)
    with _checked_already():  # test_size and seed: plan() checked them
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=plan.test_size, random_state=plan.seed
        )
    if len(X_train) == 0 or len(X_test) == 0:
        raise InvalidField("test_size", f"leaves no rows to train or test on ({len(X)} rows)")
    # Before imputation: drift compares the inputs serving receives, blanks unfilled.
    described = _per_frame(
        frame,
        ("reference", tuple(plan.dtypes.items()), plan.test_size, plan.seed),
        lambda: reference(X_train, plan.dtypes),
    )
    learned: dict[str, Any] = {}
    if plan.impute is not None:
        # Learned from the training rows only, as a pipeline's imputer would be.
        learned = imputation.learn(X_train, plan.dtypes, plan.impute)
        X_train, X_test = (
            imputation.fill_frame(X_train, learned),
            imputation.fill_frame(X_test, learned),
        )
    if task == CLASSIFICATION and y_train.nunique() < 2:
        raise FailedPrecondition("classification needs at least two classes in the training rows")
    progress(jobs_pb2.STAGE_FITTING, 0.2)
    started = time.perf_counter()

    def fitting(share: float) -> None:
        progress(jobs_pb2.STAGE_FITTING, 0.2 + 0.6 * share)

    fit_reporting(model, estimator, X_train, y_train, fitting, cores=cores)
    fitted = time.perf_counter()
    progress(jobs_pb2.STAGE_EVALUATING, 0.8)
    scoring = time.perf_counter()
    scores = metrics_for(model, task, X_test, y_test)
    fit_seconds = fitted - started + time.perf_counter() - scoring
    classes = [plain(c) for c in getattr(model, "classes_", [])]
    return Trained(
        model,
        task,
        params,
        scores,
        len(X_train),
        len(X_test),
        classes,
        fit_seconds,
        imputed=learned,
        warnings=_identifiers_of(frame, X, plan.dtypes),
        reference=described,
    )


# What a fit found of a dataset frame that depends on nothing but the frame and the key: a series
# of jobs on one dataset (a search's trials, a worker's run of small fits) asks the same of the
# same frame, which a fit process keeps loaded and never changes. The identifier check (every row
# of every feature) cost a seed job 1.7 ms of CPU, the drift reference of its training rows 1.5.
_FOUND: OrderedDict[tuple[Any, ...], tuple[Any, Any]] = OrderedDict()
_FOUND_MOST = 32


def _per_frame(frame: pd.DataFrame, key: tuple[Any, ...], find: Callable[[], T]) -> T:
    """``find()``, which depends only on ``frame`` and ``key``, found once per frame and key;
    what it returns is shared, so its callers copy what they would change."""
    whole = (id(frame), *key)
    hit = _FOUND.get(whole)
    if hit is not None and hit[0]() is frame:  # the same frame, not one at a reused address
        _FOUND.move_to_end(whole)
        found: T = hit[1]
        return found
    found = find()
    _FOUND[whole] = (weakref.ref(frame), found)
    while len(_FOUND) > _FOUND_MOST:
        _FOUND.popitem(last=False)
    return found


def _identifiers_of(frame: pd.DataFrame, X: pd.DataFrame, dtypes: Mapping[str, str]) -> list[str]:
    """``identifiers(X, dtypes)`` for ``X``, the ``dtypes`` columns of ``frame``, found once."""
    key = ("identifiers", tuple(dtypes.items()))
    return list(_per_frame(frame, key, lambda: identifiers(X, dtypes)))


# Fewer rows than this say little about whether a column is an identifier.
_IDENTIFIER_MIN_ROWS = 20


def identifiers(X: pd.DataFrame, dtypes: Mapping[str, str]) -> list[str]:
    """A warning per feature with a different value in every row, like an identifier: whole
    numbers or text (measurements such as 1.73 may well never repeat)."""
    found = []
    for name, dtype in dtypes.items():
        column = X[name].dropna()
        if len(column) < _IDENTIFIER_MIN_ROWS or dtype == "boolean":
            continue
        if dtype == "numeric" and not (column % 1 == 0).all():
            continue
        if column.nunique() == len(column):
            found.append(
                f"feature {name} has a different value in every row ({len(column):,} of "
                f"{len(column):,}), like an identifier: a model learns nothing general from it; "
                f"leave it out (mlgate train --exclude {name}; TrainRequest.exclude)"
            )
    return found


def _checked_already() -> AbstractContextManager[None]:
    """scikit-learn without its checks of a function's arguments, for calls whose arguments mlgate
    made or checked: the same results, without a third of a small job's metric and split time."""
    context: AbstractContextManager[None] = config_context(skip_parameter_validation=True)
    return context


def metrics_for(model: Any, task: str, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Holdout metrics: rmse, mae, r2; or accuracy, f1_macro, and roc_auc, log_loss where defined."""
    with _checked_already():  # the model's own predictions and the holdout's labels
        return _metrics(model, task, X, y)


def _metrics(model: Any, task: str, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    # scikit-learn's own predictions, without a forest's per-tree dispatch (workers.evaluation).
    predicted, proba = evaluate_frame(model, X)
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
    if proba is not None and set(y.unique()) <= set(labels):
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
