"""The gateway's search planning without a gateway: scorer names, the halving schedule and the
ranks, each held to scikit-learn's own."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.dummy import DummyRegressor
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.metrics import get_scorer_names
from sklearn.model_selection import HalvingGridSearchCV, KFold
from sklearn.tree import DecisionTreeRegressor

from mlgate.v1 import jobs_pb2
from server.search import rank
from server.search_space import SCORERS, schedule


def test_the_scorer_names_are_scikit_learns() -> None:
    assert set(get_scorer_names()) == SCORERS


@pytest.mark.parametrize(
    ("candidates", "low", "high", "factor"),
    [
        (12, 10, 400, 3),
        (8, 5, 40, 3),
        (8, 1, 1000, 2),
        (30, 20, 100, 3),
        (5, 7, 7, 2),
        (2, 1, 9, 3),
    ],
)
def test_the_halving_schedule_is_scikit_learns_on_a_parameter(
    candidates: int, low: int, high: int, factor: int
) -> None:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 2)), rng.normal(size=60)
    grid = {"min_samples_leaf": list(range(1, candidates + 1))}
    search = HalvingGridSearchCV(
        DecisionTreeRegressor(),
        grid,
        resource="max_depth",
        min_resources=low,
        max_resources=high,
        factor=factor,
        cv=KFold(2),
    ).fit(X, y)
    halving = jobs_pb2.Halving(
        resource="max_depth", min_resources=low, max_resources=high, factor=factor
    )
    ours = schedule(halving, candidates)
    assert list(ours.resources) == search.n_resources_
    assert list(ours.counts) == search.n_candidates_


@pytest.mark.parametrize(("candidates", "rows", "factor"), [(12, 200, 3), (6, 90, 2), (9, 37, 3)])
def test_the_halving_schedule_is_scikit_learns_on_samples(
    candidates: int, rows: int, factor: int
) -> None:
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(rows, 2)), rng.normal(size=rows)
    grid = {"constant": list(range(candidates)), "strategy": ["constant"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = HalvingGridSearchCV(
            DummyRegressor(), grid, min_resources="smallest", factor=factor, cv=KFold(3)
        ).fit(X, y)
    halving = jobs_pb2.Halving(
        resource="n_samples", min_resources=3 * 2, max_resources=rows, factor=factor
    )
    ours = schedule(halving, candidates)
    assert list(ours.resources) == search.n_resources_
    assert list(ours.counts) == search.n_candidates_


def test_ranks_are_cv_results_ranks_with_failures_last() -> None:
    means = [0.5, math.nan, 0.7, 0.5, math.nan, -1.0]
    filled = np.nan_to_num(np.array(means), nan=np.nanmin(means) - 1)
    assert rank(means) == list(rankdata(-filled, method="min").astype(int))
    assert rank([math.nan, math.nan]) == [1, 1]
