"""The estimator allowlist and hyperparameter checks: the gateway's (a table generated from
scikit-learn, no scikit-learn imported) and the worker's (scikit-learn itself) agree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.utils._param_validation import make_constraint

from mlgate import constraints
from mlgate.errors import InvalidField
from mlgate.estimators import CLASSIFICATION, ESTIMATORS, REGRESSION, hyperparameters
from workers.estimators import build, sklearn_class


def test_default_is_the_original_forest() -> None:
    estimator, params = build("", REGRESSION, {}, 42)
    assert isinstance(estimator, RandomForestRegressor)
    assert (estimator.max_depth, estimator.n_estimators, estimator.random_state) == (3, 100, 42)
    assert params["max_depth"] == 3


def test_allowlist_covers_both_tasks_where_sklearn_has_both() -> None:
    both = {"random_forest", "extra_trees", "gradient_boosting", "hist_gradient_boosting", "ridge"}
    for name in both:
        assert set(ESTIMATORS[name].classes) == {REGRESSION, CLASSIFICATION}
    assert set(ESTIMATORS["linear"].classes) == {REGRESSION}
    assert set(ESTIMATORS["logistic_regression"].classes) == {CLASSIFICATION}


def test_struct_numbers_become_integers_where_the_estimator_wants_them() -> None:
    estimator, _ = build("random_forest", REGRESSION, {"n_estimators": 7.0, "max_depth": 2.0}, 1)
    assert estimator.n_estimators == 7 and isinstance(estimator.n_estimators, int)
    # A float-typed hyperparameter keeps its float: 1.0 means "all features", 1 would mean one.
    estimator, _ = build("random_forest", REGRESSION, {"max_features": 1.0}, 1)
    assert estimator.max_features == 1.0 and isinstance(estimator.max_features, float)


CHECKS: dict[str, Callable[[str, str, dict[str, Any], int], object]] = {
    "gateway": hyperparameters,
    "worker": build,
}


@pytest.mark.parametrize("side", sorted(CHECKS))
@pytest.mark.parametrize(
    ("name", "task", "params", "field"),
    [
        ("nonsense", REGRESSION, {}, "estimator"),
        ("linear", CLASSIFICATION, {}, "estimator"),
        ("random_forest", REGRESSION, {"depth": 3}, "params.depth"),
        ("random_forest", REGRESSION, {"n_estimators": -1}, "params.n_estimators"),
        ("random_forest", REGRESSION, {"n_estimators": 2.5}, "params.n_estimators"),
        ("random_forest", REGRESSION, {"max_depth": "deep"}, "params.max_depth"),
        ("ridge", REGRESSION, {"alpha": "lots"}, "params.alpha"),
        ("ridge", REGRESSION, {"alpha": float("nan")}, "params.alpha"),
        ("logistic_regression", CLASSIFICATION, {"C": float("inf")}, "params.C"),
        ("gradient_boosting", REGRESSION, {"learning_rate": float("-inf")}, "params.learning_rate"),
        (
            "random_forest",
            CLASSIFICATION,
            {"class_weight": {"0": float("nan")}},
            "params.class_weight",
        ),
        ("hist_gradient_boosting", REGRESSION, {"loss": "cubic"}, "params.loss"),
        ("gradient_boosting", REGRESSION, {"init": "zero", "subsample": 0.0}, "params.subsample"),
    ],
)
def test_refusals_name_the_field(
    side: str, name: str, task: str, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidField) as excinfo:
        CHECKS[side](name, task, params, 42)
    assert excinfo.value.field == field


def test_refusals_say_what_scikit_learn_accepts() -> None:
    with pytest.raises(InvalidField) as excinfo:
        hyperparameters("random_forest", REGRESSION, {"max_depth": "deep"}, 42)
    assert excinfo.value.message == (
        "params.max_depth: RandomForestRegressor needs an int in the range [1, inf) or null; "
        "got 'deep' instead"
    )
    with pytest.raises(InvalidField) as excinfo:
        hyperparameters("ridge", REGRESSION, {"alpha": float("nan")}, 42)
    assert "finite" in excinfo.value.message


# JSON values a request can carry, for every hyperparameter of every allowlisted class.
_PROBES: list[Any] = [
    None, True, False, -1, 0, 1, 2, 3, 255, 256, 2**32 - 1, 2**32,
    -0.5, 0.0, 0.5, 1.0, 1.5, 1e9, "", "sqrt", "auto", "balanced", "nonsense",
    [], [1, -1], [[0, 1]], {}, {"0": 1.0},
]  # fmt: skip


def test_the_gateway_decides_every_value_as_scikit_learn_does() -> None:
    classes = constraints.table()["classes"]
    assert set(classes) == {p for spec in ESTIMATORS.values() for p in spec.classes.values()}
    for path, params in classes.items():
        declared = sklearn_class(path)._parameter_constraints
        for name, spec in params.items():
            allowed = spec["allowed"]
            assert allowed is not None, f"scikit-learn does not check {path}.{name}"
            options = [o for c in allowed for o in c.get("options", [])]
            for value in [*_PROBES, *options]:
                ours = any(constraints.satisfies(c, value) for c in allowed)
                theirs = any(make_constraint(c).is_satisfied_by(value) for c in declared[name])
                assert ours == theirs, (path, name, value)
