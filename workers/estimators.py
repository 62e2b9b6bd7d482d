"""Building an allowlisted estimator: the class and hyperparameters ``mlgate.estimators`` checked.

scikit-learn validates the hyperparameters once more here: the gateway's check reads a table
generated from scikit-learn, and this one is scikit-learn itself, so the two cannot drift apart
unnoticed even on a worker whose scikit-learn differs from the table's.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import InvalidParameterError

from mlgate.errors import InvalidField
from mlgate.estimators import hyperparameters

__all__ = ["build", "sklearn_class"]


def sklearn_class(path: str) -> type[BaseEstimator]:
    """The class an allowlist path such as ``sklearn.ensemble.RandomForestRegressor`` names."""
    module, name = path.rsplit(".", 1)
    found: type[BaseEstimator] = getattr(importlib.import_module(module), name)
    return found


def build(
    name: str, task: str, params: Mapping[str, Any], seed: int
) -> tuple[BaseEstimator, dict[str, Any]]:
    """A configured, unfitted estimator and its effective hyperparameters.

    Raises InvalidField naming ``estimator`` or ``params.<name>`` for anything the allowlist or
    scikit-learn's own parameter constraints refuse.
    """
    path, chosen = hyperparameters(name, task, params, seed)
    estimator: BaseEstimator = sklearn_class(path)(**chosen)
    try:
        estimator._validate_params()
    except InvalidParameterError as exc:
        bad = next((key for key in chosen if f"'{key}'" in str(exc)), "")
        raise InvalidField(f"params.{bad}" if bad else "params", str(exc)) from None
    effective = {
        key: value for key, value in estimator.get_params(deep=False).items() if _jsonable(value)
    }
    return estimator, effective


def _jsonable(value: Any) -> bool:
    return value is None or (
        isinstance(value, (bool, int, float, str)) and not inspect.isclass(value)
    )
