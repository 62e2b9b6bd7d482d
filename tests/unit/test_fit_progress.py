"""Progress while fitting: a forest grown in steps is the forest a single fit makes, and the
reports go up to the whole fit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

from workers.fitprogress import fit_reporting, grow_forest
from workers.importances import feature_importances


@pytest.mark.parametrize(
    ("forest", "data"),
    [
        (RandomForestRegressor(n_estimators=37, max_depth=6, random_state=3), load_diabetes),
        (RandomForestClassifier(n_estimators=25, class_weight="balanced_subsample"), load_iris),
        (ExtraTreesClassifier(n_estimators=30, bootstrap=True, random_state=7), load_iris),
    ],
)
def test_a_forest_grown_in_steps_is_the_one_a_single_fit_makes(forest, data) -> None:
    X, y = data(return_X_y=True)
    if forest.random_state is None:
        forest.set_params(random_state=11)
    whole = clone(forest).fit(X, y)
    reports: list[float] = []
    grow_forest(forest, X, y, reports.append, cores=1, first_step=4)
    assert reports == sorted(reports) and len(reports) == -(-forest.n_estimators // 4)
    assert reports[-1] == 1.0
    assert forest.get_params() == whole.get_params()  # warm_start and n_estimators as asked
    assert len(forest.estimators_) == len(whole.estimators_)
    for grown, fitted in zip(forest.estimators_, whole.estimators_, strict=True):
        for name in ("feature", "threshold", "value", "children_left"):
            np.testing.assert_array_equal(getattr(grown.tree_, name), getattr(fitted.tree_, name))
    np.testing.assert_array_equal(forest.predict(X), whole.predict(X))


def test_gradient_boosting_reports_each_stage() -> None:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = GradientBoostingRegressor(n_estimators=40, random_state=0)
    reports: list[float] = []
    fit_reporting(model, model, X, y, reports.append, cores=1)
    assert len(reports) == 40 and reports[-1] == 1.0
    whole = GradientBoostingRegressor(n_estimators=40, random_state=0).fit(X, y)
    np.testing.assert_array_equal(model.predict(X), whole.predict(X))


def test_a_small_forest_is_fitted_in_one_call() -> None:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model = RandomForestRegressor(n_estimators=100, max_depth=3, random_state=42)
    reports: list[float] = []
    fit_reporting(model, model, X, y, reports.append, cores=2)
    assert reports == []
    assert not model.warm_start and len(model.estimators_) == 100


@pytest.mark.parametrize(
    ("forest", "data"),
    [
        (RandomForestRegressor(n_estimators=50, max_depth=3, random_state=0), load_diabetes),
        (ExtraTreesClassifier(n_estimators=30, random_state=1), load_iris),
    ],
)
def test_forest_importances_are_scikit_learn_s_to_the_bit(forest, data) -> None:
    X, y = data(return_X_y=True)
    forest.fit(X, y)
    features = [f"f{i}" for i in range(X.shape[1])]
    found = feature_importances(forest, features)
    assert list(found.values()) == [float(v) for v in forest.feature_importances_]
