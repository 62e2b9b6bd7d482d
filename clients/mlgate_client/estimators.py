"""The estimators a gateway accepts, and what it knows of their hyperparameters without scikit-learn.

Shared by both sides: the gateway checks a request against this allowlist and the constraints
table (``mlgate.constraints``), the worker builds exactly the class it names, and the client lists
the estimators and shows a model's recorded hyperparameters with their types. Classes are named by
their public import path, never imported.

``sklearn_constraints.json`` is generated from each allowlisted class's ``_parameter_constraints``
and defaults by ``make tables`` (``python -m workers.tables``); a test regenerates it and holds it
equal, so a scikit-learn upgrade that changes a constraint fails until the table is renewed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

__all__ = [
    "CLASSIFICATION",
    "DEFAULT_ESTIMATOR",
    "ESTIMATORS",
    "REGRESSION",
    "TABLE_FILE",
    "EstimatorSpec",
    "class_path",
    "integral",
    "parameters",
    "recorded_params",
    "table",
]

REGRESSION = "regression"
CLASSIFICATION = "classification"
DEFAULT_ESTIMATOR = "random_forest"
TABLE_FILE = "sklearn_constraints.json"

# The original design's forest; kept as the default so its results reproduce exactly.
_FOREST_DEFAULTS = {"max_depth": 3, "n_estimators": 100}


@dataclass(frozen=True)
class EstimatorSpec:
    """One allowlisted estimator: its class path per task and the defaults mlgate applies."""

    name: str
    classes: Mapping[str, str]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # Trains on feature columns with blanks (missing values), handling them itself.
    missing_values: bool = False


ESTIMATORS: dict[str, EstimatorSpec] = {
    spec.name: spec
    for spec in (
        EstimatorSpec(
            "random_forest",
            {
                REGRESSION: "sklearn.ensemble.RandomForestRegressor",
                CLASSIFICATION: "sklearn.ensemble.RandomForestClassifier",
            },
            _FOREST_DEFAULTS,
        ),
        EstimatorSpec(
            "extra_trees",
            {
                REGRESSION: "sklearn.ensemble.ExtraTreesRegressor",
                CLASSIFICATION: "sklearn.ensemble.ExtraTreesClassifier",
            },
            _FOREST_DEFAULTS,
        ),
        EstimatorSpec(
            "gradient_boosting",
            {
                REGRESSION: "sklearn.ensemble.GradientBoostingRegressor",
                CLASSIFICATION: "sklearn.ensemble.GradientBoostingClassifier",
            },
        ),
        EstimatorSpec(
            "hist_gradient_boosting",
            {
                REGRESSION: "sklearn.ensemble.HistGradientBoostingRegressor",
                CLASSIFICATION: "sklearn.ensemble.HistGradientBoostingClassifier",
            },
            missing_values=True,
        ),
        EstimatorSpec(
            "decision_tree",
            {
                REGRESSION: "sklearn.tree.DecisionTreeRegressor",
                CLASSIFICATION: "sklearn.tree.DecisionTreeClassifier",
            },
        ),
        EstimatorSpec("linear", {REGRESSION: "sklearn.linear_model.LinearRegression"}),
        EstimatorSpec(
            "ridge",
            {
                REGRESSION: "sklearn.linear_model.Ridge",
                CLASSIFICATION: "sklearn.linear_model.RidgeClassifier",
            },
        ),
        EstimatorSpec(
            "logistic_regression",
            {CLASSIFICATION: "sklearn.linear_model.LogisticRegression"},
            {"max_iter": 1000},
        ),
    )
}


def class_path(name: str, task: str) -> str | None:
    """The class path of estimator ``name`` (empty: the default) for ``task``; None when the
    name is not allowlisted or lacks the task."""
    spec = ESTIMATORS.get(name or DEFAULT_ESTIMATOR)
    return None if spec is None else spec.classes.get(task)


@functools.cache
def table() -> dict[str, Any]:
    """The generated table: ``{"scikit-learn": version, "classes": {path: {param: spec}}}``."""
    loaded: dict[str, Any] = json.loads(
        resources.files(__package__).joinpath(TABLE_FILE).read_text(encoding="utf-8")
    )
    return loaded


def parameters(path: str) -> Mapping[str, Any]:
    """The hyperparameters of class ``path``: each one's default and allowed values."""
    found: Mapping[str, Any] | None = table()["classes"].get(path)
    if found is None:
        raise LookupError(f"{path} is not in {TABLE_FILE}; run `make tables`")
    return found


def integral(value: Any, default: Any) -> Any:
    """``value`` as an int where it is a whole float and the parameter's ``default`` says it is
    an integer (or is unset): a protobuf Struct, in which hyperparameters travel and are
    recorded, carries every number as a double."""
    if (
        isinstance(value, float)
        and value.is_integer()
        and (default is None or (isinstance(default, int) and not isinstance(default, bool)))
    ):
        return int(value)
    return value


def recorded_params(name: str, task: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A model's recorded hyperparameters with its integer ones as ints (``max_depth=3``, not
    ``3.0``), for showing them; as they are for an estimator or task not allowlisted."""
    path = class_path(name, task)
    try:
        known = parameters(path) if path is not None else {}
    except LookupError:
        known = {}
    return {
        key: integral(value, known[key]["default"]) if key in known else value
        for key, value in params.items()
    }
