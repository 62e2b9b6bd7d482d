"""The estimator allowlist: the only scikit-learn classes a request can name, with mlgate's defaults.

The gateway validates names and hyperparameters here before a job is queued; the worker builds the
same estimator from the same table, so what was validated is what runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sklearn import ensemble, linear_model, tree
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import InvalidParameterError

from mlgate.errors import InvalidArgument
from mlgate.quoting import quote, shorten

__all__ = [
    "CLASSIFICATION",
    "DEFAULT_ESTIMATOR",
    "ESTIMATORS",
    "REGRESSION",
    "EstimatorSpec",
    "build",
]

REGRESSION = "regression"
CLASSIFICATION = "classification"
DEFAULT_ESTIMATOR = "random_forest"

# The original design's forest; kept as the default so its results reproduce exactly.
_FOREST_DEFAULTS = {"max_depth": 3, "n_estimators": 100}


@dataclass(frozen=True)
class EstimatorSpec:
    """One allowlisted estimator: its class per task and the defaults mlgate applies."""

    name: str
    classes: Mapping[str, type[BaseEstimator]]
    defaults: Mapping[str, Any] = field(default_factory=dict)


ESTIMATORS: dict[str, EstimatorSpec] = {
    spec.name: spec
    for spec in (
        EstimatorSpec(
            "random_forest",
            {
                REGRESSION: ensemble.RandomForestRegressor,
                CLASSIFICATION: ensemble.RandomForestClassifier,
            },
            _FOREST_DEFAULTS,
        ),
        EstimatorSpec(
            "extra_trees",
            {
                REGRESSION: ensemble.ExtraTreesRegressor,
                CLASSIFICATION: ensemble.ExtraTreesClassifier,
            },
            _FOREST_DEFAULTS,
        ),
        EstimatorSpec(
            "gradient_boosting",
            {
                REGRESSION: ensemble.GradientBoostingRegressor,
                CLASSIFICATION: ensemble.GradientBoostingClassifier,
            },
        ),
        EstimatorSpec(
            "hist_gradient_boosting",
            {
                REGRESSION: ensemble.HistGradientBoostingRegressor,
                CLASSIFICATION: ensemble.HistGradientBoostingClassifier,
            },
        ),
        EstimatorSpec(
            "decision_tree",
            {
                REGRESSION: tree.DecisionTreeRegressor,
                CLASSIFICATION: tree.DecisionTreeClassifier,
            },
        ),
        EstimatorSpec("linear", {REGRESSION: linear_model.LinearRegression}),
        EstimatorSpec(
            "ridge",
            {REGRESSION: linear_model.Ridge, CLASSIFICATION: linear_model.RidgeClassifier},
        ),
        EstimatorSpec(
            "logistic_regression",
            {CLASSIFICATION: linear_model.LogisticRegression},
            {"max_iter": 1000},
        ),
    )
}


def _coerce(value: Any, default: Any) -> Any:
    # Struct carries every number as a double; give integer-valued ones back their int type
    # where the estimator's default says the parameter is an integer (or unset).
    if (
        isinstance(value, float)
        and value.is_integer()
        and (default is None or (isinstance(default, int) and not isinstance(default, bool)))
    ):
        return int(value)
    return value


def build(
    name: str, task: str, params: Mapping[str, Any], seed: int
) -> tuple[BaseEstimator, dict[str, Any]]:
    """A configured, unfitted estimator and its effective hyperparameters.

    Raises InvalidArgument naming ``estimator`` or ``params.<name>`` for anything the allowlist or
    scikit-learn's own parameter constraints refuse.
    """
    spec = ESTIMATORS.get(name or DEFAULT_ESTIMATOR)
    if spec is None:
        raise InvalidArgument(
            "estimator",
            f"unknown estimator {quote(name)}; choose one of {', '.join(sorted(ESTIMATORS))}",
        )
    cls = spec.classes.get(task)
    if cls is None:
        raise InvalidArgument(
            "estimator",
            f"{spec.name} does not support {task}; it supports {', '.join(spec.classes)}",
        )
    defaults = cls().get_params()
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise InvalidArgument(
            f"params.{shorten(unknown[0])}",
            f"{cls.__name__} has no hyperparameter {quote(unknown[0])}; "
            f"it has {', '.join(sorted(defaults))}",
        )
    chosen: dict[str, Any] = dict(spec.defaults)
    if "random_state" in defaults:
        chosen["random_state"] = seed
    chosen.update({key: _coerce(value, defaults[key]) for key, value in params.items()})
    estimator = cls(**chosen)
    try:
        estimator._validate_params()
    except InvalidParameterError as exc:
        bad = next((key for key in chosen if f"'{key}'" in str(exc)), "params")
        raise InvalidArgument(f"params.{bad}" if bad != "params" else bad, str(exc)) from None
    effective = {
        key: value for key, value in estimator.get_params(deep=False).items() if _jsonable(value)
    }
    return estimator, effective


def _jsonable(value: Any) -> bool:
    return value is None or (
        isinstance(value, (bool, int, float, str)) and not inspect.isclass(value)
    )
