"""The estimator allowlist, checked: the only scikit-learn classes a request can name.

The allowlist itself (names, class paths, mlgate's defaults) is ``mlgate_client.estimators``, which
the client reads too; here the gateway checks a request against it and scikit-learn's constraints
table (``mlgate.constraints``) without loading scikit-learn, and the worker builds exactly the class
and hyperparameters checked here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlgate import constraints
from mlgate.errors import InvalidField
from mlgate.quoting import quote
from mlgate_client.estimators import (
    CLASSIFICATION,
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    REGRESSION,
    EstimatorSpec,
    class_path,
    recorded_params,
)

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


def estimator_class(name: str, task: str) -> str:
    """The class path of estimator ``name`` (empty: the default) for ``task``.

    Raises InvalidField naming ``estimator`` for a name not allowlisted or a task it lacks.
    """
    path = class_path(name, task)
    if path is not None:
        return path
    spec = ESTIMATORS.get(name or DEFAULT_ESTIMATOR)
    if spec is None:
        raise InvalidField(
            "estimator",
            f"unknown estimator {quote(name)}; choose one of {', '.join(sorted(ESTIMATORS))}",
        )
    raise InvalidField(
        "estimator", f"{spec.name} does not support {task}; it supports {', '.join(spec.classes)}"
    )


def hyperparameters(
    name: str, task: str, params: Mapping[str, Any], seed: int
) -> tuple[str, dict[str, Any]]:
    """The class path and the keyword arguments to build it with: mlgate's defaults, the seed
    as ``random_state`` where the class has one, then the request's ``params``.

    Raises InvalidField naming ``estimator`` or ``params.<name>`` for anything the allowlist
    or scikit-learn's constraints refuse.
    """
    path = estimator_class(name, task)
    chosen: dict[str, Any] = dict(ESTIMATORS[name or DEFAULT_ESTIMATOR].defaults)
    if constraints.has_parameter(path, "random_state"):
        chosen["random_state"] = seed
    chosen.update(constraints.check(path, params))
    return path, chosen
