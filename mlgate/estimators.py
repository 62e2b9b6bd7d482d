"""The estimator allowlist: the only scikit-learn classes a request can name, with mlgate's defaults.

Classes are named by their public import path, not imported: the gateway checks a request against
this list and scikit-learn's constraints table (``mlgate.constraints``) without loading
scikit-learn, and the worker builds exactly the class and hyperparameters checked here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlgate import constraints
from mlgate.errors import InvalidArgument
from mlgate.quoting import quote

__all__ = [
    "CLASSIFICATION",
    "DEFAULT_ESTIMATOR",
    "ESTIMATORS",
    "REGRESSION",
    "EstimatorSpec",
    "estimator_class",
    "hyperparameters",
    "recorded_params",
]

REGRESSION = "regression"
CLASSIFICATION = "classification"
DEFAULT_ESTIMATOR = "random_forest"

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


def estimator_class(name: str, task: str) -> str:
    """The class path of estimator ``name`` (empty: the default) for ``task``.

    Raises InvalidArgument naming ``estimator`` for a name not allowlisted or a task it lacks.
    """
    spec = ESTIMATORS.get(name or DEFAULT_ESTIMATOR)
    if spec is None:
        raise InvalidArgument(
            "estimator",
            f"unknown estimator {quote(name)}; choose one of {', '.join(sorted(ESTIMATORS))}",
        )
    path = spec.classes.get(task)
    if path is None:
        raise InvalidArgument(
            "estimator",
            f"{spec.name} does not support {task}; it supports {', '.join(spec.classes)}",
        )
    return path


def recorded_params(name: str, task: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A model's recorded hyperparameters with its integer ones as ints (``max_depth=3``, not
    ``3.0``), for showing them; as they are for an estimator or task not allowlisted."""
    try:
        path = estimator_class(name, task)
    except InvalidArgument:
        return dict(params)
    return constraints.typed(path, params)


def hyperparameters(
    name: str, task: str, params: Mapping[str, Any], seed: int
) -> tuple[str, dict[str, Any]]:
    """The class path and the keyword arguments to build it with: mlgate's defaults, the seed
    as ``random_state`` where the class has one, then the request's ``params``.

    Raises InvalidArgument naming ``estimator`` or ``params.<name>`` for anything the allowlist
    or scikit-learn's constraints refuse.
    """
    path = estimator_class(name, task)
    chosen: dict[str, Any] = dict(ESTIMATORS[name or DEFAULT_ESTIMATOR].defaults)
    if constraints.has_parameter(path, "random_state"):
        chosen["random_state"] = seed
    chosen.update(constraints.check(path, params))
    return path, chosen
