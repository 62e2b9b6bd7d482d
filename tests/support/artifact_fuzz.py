"""The crafted-artifact fuzzer's models and probe: a small real model of every allowlisted
estimator and task to mutate (``tests.support.mutations``), and what a sandboxed child does with
each mutant: load it as a worker does, and predict with it as a worker does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from mlgate.errors import FailedPrecondition, ResourceExhausted
from mlgate.estimators import ESTIMATORS
from storage.errors import IntegrityError
from storage.models import ARRAYS, Encoded
from workers.categories import unseen_categories
from workers.estimators import build
from workers.evaluation import evaluate_frame
from workers.formats import arrays, decode
from workers.parallelism import cap_jobs
from workers.training import _with_encoding

__all__ = ["PRELOAD", "Case", "case_names", "cases", "load", "probe", "values_of"]

#: What the sandbox's forkserver imports once, so each fresh child starts warm.
PRELOAD = ["tests.support.artifact_fuzz"]
#: Far above what these small models need, far below what hurts.
MAX_BYTES = 64 * 1024 * 1024

_SMALL = {
    "random_forest": {"n_estimators": 3, "max_depth": 3},
    "extra_trees": {"n_estimators": 3, "max_depth": 3},
    "gradient_boosting": {"n_estimators": 3, "max_depth": 2},
    "hist_gradient_boosting": {"max_iter": 3, "max_leaf_nodes": 4},
    "decision_tree": {"max_depth": 3},
    "logistic_regression": {"max_iter": 3000},
}
_DATA = {"regression": load_diabetes, "classification": load_iris, "binary": load_breast_cancer}


@dataclass(frozen=True)
class Case:
    """A small real model saved in mlgate's format, and the rows to predict with."""

    name: str
    artifact: bytes
    features: list[str]
    frames: list[pd.DataFrame]


def _frames(X: pd.DataFrame, missing: bool) -> list[pd.DataFrame]:
    extreme = pd.DataFrame([[1e30] * X.shape[1], [-1e30] * X.shape[1]], columns=X.columns).astype(
        X.dtypes.to_dict()
    )
    few = pd.concat([X.iloc[:4], extreme], ignore_index=True)
    if missing:  # the estimators that take blanks
        few = pd.concat([few, X.iloc[:1].astype(float).map(lambda _: np.nan)], ignore_index=True)
    # Forests are walked two ways: up to 100 rows at once, more tree by tree. Many rows first:
    # a write past the end of their output array corrupts the heap detectably, at once.
    many = pd.concat([X] * (1 + 1000 // len(X)), ignore_index=True).iloc[:1000]
    return [many, few]


def _kinds() -> Iterator[tuple[str, str, str]]:
    for name, spec in sorted(ESTIMATORS.items()):
        for task in spec.classes:
            for kind in [task] if task == "regression" else ["classification", "binary"]:
                yield name, task, kind


def case_names() -> list[str]:
    """The names ``cases`` gives its models, without fitting any."""
    return [f"{name}-{kind}" for name, _, kind in _kinds()] + [
        "encoded-decision_tree",
        "categorical-hist_gradient_boosting",
    ]


@functools.cache
def cases() -> dict[str, Case]:
    """One small model per allowlisted estimator and task (classifiers binary and multiclass),
    and one behind the encoding pipeline."""
    found = {}
    for name, task, kind in _kinds():
        X, y = _DATA[kind](return_X_y=True, as_frame=True)
        X = X.iloc[:, :6]  # fewer features: fewer fields, as many kinds of field
        model, _ = build(name, task, _SMALL.get(name, {}), 0)
        model.fit(X, y)
        frames = _frames(X, ESTIMATORS[name].missing_values)
        found[f"{name}-{kind}"] = Case(
            f"{name}-{kind}", arrays.encode(model), list(X.columns), frames
        )
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X = X.iloc[:, :4].assign(colour=np.where(X["sex"] > 0, "red", "blue"))
    estimator, _ = build("decision_tree", "regression", {"max_depth": 3}, 0)
    model = _with_encoding(estimator, {**{c: "numeric" for c in X.columns}, "colour": "string"})
    model.fit(X, y)
    rows = X.iloc[:5].copy()
    rows.loc[4, "colour"] = "green"  # a category training never saw
    frames = [pd.concat([X] * 3, ignore_index=True).iloc[:1000], rows]
    found["encoded-decision_tree"] = Case(
        "encoded-decision_tree", arrays.encode(model), list(X.columns), frames
    )
    found["categorical-hist_gradient_boosting"] = _categorical_case()
    return found


def _categorical_case() -> Case:
    """Histogram gradient boosting given ``categorical_features``: its own preprocessor."""
    X, y = load_iris(return_X_y=True, as_frame=True)
    X = X.iloc[:, :3].assign(zone=(X.iloc[:, 3] * 4).round())
    X.loc[::11, "zone"] = np.nan
    params = {**_SMALL["hist_gradient_boosting"], "categorical_features": ["zone"]}
    model, _ = build("hist_gradient_boosting", "classification", params, 0)
    model.fit(X, y)
    rows = X.iloc[:5].copy()
    rows.loc[4, "zone"] = 99.0  # a category training never saw
    frames = [pd.concat([X] * 7, ignore_index=True).iloc[:1000], rows]
    name = "categorical-hist_gradient_boosting"
    return Case(name, arrays.encode(model), list(X.columns), frames)


def _check_outputs(model: Any, rows: int, predicted: Any, proba: Any) -> str | None:
    if not isinstance(predicted, np.ndarray) or predicted.shape != (rows,):
        return f"{rows} rows predicted as {getattr(predicted, 'shape', type(predicted))}"
    classes = getattr(model, "classes_", None)
    if classes is None:
        if predicted.dtype.kind != "f" or not np.all(np.isfinite(predicted)):
            return f"predictions that are not finite numbers: {predicted[:5]}"
        return None
    if not set(predicted.tolist()) <= set(classes.tolist()):
        return f"predicted labels outside classes_: {predicted[:5]}"
    if proba is not None and (proba.shape != (rows, len(classes)) or not np.isfinite(proba).all()):
        return f"probabilities of shape {proba.shape} for {len(classes)} classes, or not finite"
    return None


def values_of(frame: pd.DataFrame) -> Callable[[str], list[Any]]:
    """A feature's values, one per row, as the worker gives them to ``unseen_categories``."""

    def values(name: str) -> list[Any]:
        return list(frame[name].tolist())

    return values


def load(artifact: bytes, features: list[str], max_bytes: int = MAX_BYTES) -> tuple[str, str]:
    """Load the artifact as a worker does: ("refused", the status's message), ("loaded", ""), or
    ("wrong", what went wrong)."""
    try:
        decode(Encoded(ARRAYS, artifact), "crafted", features, max_bytes)
    except (IntegrityError, ResourceExhausted, FailedPrecondition) as exc:
        return "refused", f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        return "wrong", f"loading raised {type(exc).__name__}: {exc}"
    return "loaded", ""


def probe(artifact: bytes, features: list[str], frames: list[pd.DataFrame]) -> tuple[str, str]:
    """Load the artifact as a worker does, then predict as it does: ("refused", the status's
    message), ("predicted", ""), or ("wrong", what went wrong)."""
    try:
        model = decode(Encoded(ARRAYS, artifact), "fuzzed", features, MAX_BYTES)
    except (IntegrityError, ResourceExhausted, FailedPrecondition) as exc:
        return "refused", str(exc)
    except Exception as exc:
        return "wrong", f"loading raised {type(exc).__name__}: {exc}"
    try:
        cap_jobs(model, 1)
        for frame in frames:
            predicted, proba = evaluate_frame(model, frame)
            wrong = _check_outputs(model, len(frame), predicted, proba)
            if wrong:
                return "wrong", f"accepted, then {wrong}"
            unseen_categories(model, values_of(frame))
    except Exception as exc:
        return "wrong", f"accepted, then prediction raised {type(exc).__name__}: {str(exc)[:300]}"
    return "predicted", ""
