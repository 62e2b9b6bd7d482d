"""The estimator allowlist and hyperparameter validation."""

from __future__ import annotations

import pytest
from sklearn.ensemble import RandomForestRegressor

from mlgate.errors import InvalidArgument
from workers.estimators import CLASSIFICATION, ESTIMATORS, REGRESSION, build


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


@pytest.mark.parametrize(
    ("name", "task", "params", "field"),
    [
        ("nonsense", REGRESSION, {}, "estimator"),
        ("linear", CLASSIFICATION, {}, "estimator"),
        ("random_forest", REGRESSION, {"depth": 3}, "params.depth"),
        ("random_forest", REGRESSION, {"n_estimators": -1}, "params.n_estimators"),
        ("ridge", REGRESSION, {"alpha": "lots"}, "params.alpha"),
    ],
)
def test_refusals_name_the_field(
    name: str, task: str, params: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidArgument) as excinfo:
        build(name, task, params, 42)
    assert excinfo.value.field == field
