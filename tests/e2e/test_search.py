"""Search on the embedded system equals scikit-learn's GridSearchCV, RandomizedSearchCV and
HalvingGridSearchCV: the same candidates, mean and std scores per candidate (to 1e-9), ranks, best
parameters and refit model; a failing candidate ranks last; a cancelled search stops its trials
and registers nothing."""

from __future__ import annotations

import time
import warnings

import grpc
import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sk_metrics
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV, RandomizedSearchCV
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from mlgate.v1 import jobs_pb2, models_pb2
from tests.support.gateway_calls import events_of, jobs, models, refused, rows
from tests.support.search_checks import (
    assert_same_as_sklearn,
    builtin_frame,
    holdout,
    run_search,
    search_request,
    sklearn_cv,
)


def _result(events: list[jobs_pb2.JobEvent]) -> jobs_pb2.SearchResult:
    last = events[-1]
    assert last.state == jobs_pb2.JOB_STATE_SUCCEEDED, last
    return last.search_result


def test_grid_regression_equals_grid_search_cv_and_registers_the_refit(channel) -> None:
    space = {"max_depth": [2, 3, 4], "min_samples_leaf": [1, 5]}
    request = search_request(
        "diabetes", space, estimator="decision_tree", cv_folds=3, model_name="diabetes-tree"
    )
    events = run_search(channel, request)
    result = _result(events)
    progress = [e for e in events if e.HasField("search_progress")]
    assert progress and progress[-1].search_progress.trials_total == 6
    X_train, X_test, y_train, y_test = holdout(builtin_frame("diabetes"))
    search = GridSearchCV(
        DecisionTreeRegressor(random_state=42), space, cv=sklearn_cv(False, 3), scoring="r2"
    ).fit(X_train, y_train)
    assert_same_as_sklearn(result, search)
    assert result.scoring == "r2"
    assert result.model_name == "diabetes-tree" and result.model_version == 1
    expected = sk_metrics.r2_score(y_test, search.best_estimator_.predict(X_test))
    assert abs(result.metrics["r2"] - expected) <= 1e-9
    model = models(channel).GetModel(models_pb2.GetModelRequest(model_id=result.model_id)).model
    assert model.params["max_depth"] == search.best_params_["max_depth"]
    # The registered refit predicts the holdout as scikit-learn's best_estimator_ does.
    predicted = events_of(
        jobs(channel).Predict(
            jobs_pb2.PredictRequest(
                model_id=result.model_id, rows=rows(*X_test.to_dict(orient="records"))
            )
        )
    )[-1].predict_result
    assert np.allclose(
        [v.number_value for v in predicted.predictions],
        search.best_estimator_.predict(X_test),
        rtol=0,
        atol=1e-9,
    )
    trials, _ = _children(channel, events[0].job_id)
    assert len(trials) == 6


def _children(channel: grpc.Channel, parent: str) -> tuple[list[jobs_pb2.Job], str]:
    listed = jobs(channel).ListJobs(
        jobs_pb2.ListJobsRequest(parent_job_id=parent, kind=jobs_pb2.JOB_KIND_TRIAL)
    )
    return list(listed.jobs), listed.next_page_token


def test_classification_with_a_failing_candidate_ranks_it_last(channel) -> None:
    # l1_ratio=1 asks lbfgs for an l1 penalty, which it cannot fit: error_score=nan.
    space = {"C": [0.1, 1.0], "l1_ratio": [0.0, 1.0]}
    request = search_request("iris", space, estimator="logistic_regression", cv_folds=3)
    result = _result(run_search(channel, request))
    X_train, X_test, y_train, y_test = holdout(builtin_frame("iris"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search = GridSearchCV(
            LogisticRegression(max_iter=1000, random_state=42),
            space,
            cv=sklearn_cv(True, 3),
            scoring="accuracy",
        ).fit(X_train, y_train)
    assert_same_as_sklearn(result, search)
    failed = [row for row in result.candidates if row.error]
    assert len(failed) == 2 and all("l1" in row.error for row in failed)
    assert all(row.rank == 3 for row in failed)
    expected = sk_metrics.accuracy_score(y_test, search.best_estimator_.predict(X_test))
    assert abs(result.metrics["accuracy"] - expected) <= 1e-9


def test_random_search_draws_as_randomized_search_cv(channel) -> None:
    space = {"alpha": {"low": 1e-3, "high": 10.0, "log": True}}
    request = search_request("diabetes", space, estimator="ridge", n_candidates=6, cv_folds=4)
    result = _result(run_search(channel, request))
    X_train, _, y_train, _ = holdout(builtin_frame("diabetes"))
    search = RandomizedSearchCV(
        Ridge(random_state=42),
        {"alpha": stats.loguniform(1e-3, 10.0)},
        n_iter=6,
        random_state=42,
        cv=sklearn_cv(False, 4),
        scoring="r2",
    ).fit(X_train, y_train)
    assert_same_as_sklearn(result, search)


def test_halving_on_a_parameter_equals_halving_grid_search_cv(channel) -> None:
    space = {"max_depth": [2, 3, 4, 6], "max_features": [0.5, 1.0]}
    halving = jobs_pb2.Halving(resource="n_estimators", min_resources=5, max_resources=40)
    request = search_request("diabetes", space, cv_folds=3, halving=halving)
    result = _result(run_search(channel, request))
    X_train, _, y_train, _ = holdout(builtin_frame("diabetes"))
    search = HalvingGridSearchCV(
        RandomForestRegressor(random_state=42),
        space,
        resource="n_estimators",
        min_resources=5,
        max_resources=40,
        factor=3,
        cv=sklearn_cv(False, 3),
        scoring="r2",
        random_state=42,
    ).fit(X_train, y_train)
    assert_same_as_sklearn(result, search)
    assert [row.rung for row in result.candidates] == list(search.cv_results_["iter"])
    assert [row.resources for row in result.candidates] == list(search.cv_results_["n_resources"])


def test_halving_on_samples_equals_halving_grid_search_cv(channel) -> None:
    space = {"max_depth": [2, 3, 4, 5, 6, 8], "min_samples_leaf": [1, 4]}
    request = search_request(
        "diabetes",
        space,
        estimator="decision_tree",
        cv_folds=3,
        halving=jobs_pb2.Halving(resource="n_samples", min_resources=20, factor=2),
    )
    result = _result(run_search(channel, request))
    X_train, _, y_train, _ = holdout(builtin_frame("diabetes"))
    search = HalvingGridSearchCV(
        DecisionTreeRegressor(random_state=42),
        space,
        min_resources=20,
        factor=2,
        cv=sklearn_cv(False, 3),
        scoring="r2",
        random_state=42,
    ).fit(X_train, y_train)
    assert_same_as_sklearn(result, search)
    assert np.array_equal([r.rung for r in result.candidates], search.cv_results_["iter"])


def test_a_cancelled_search_stops_its_trials_and_registers_nothing(channel) -> None:
    space = {"n_estimators": [300, 301, 302, 303], "max_depth": [8]}
    request = search_request("diabetes", space, model_name="never-registered", max_parallel=2)
    stub = jobs(channel)
    stream = stub.Search(request, timeout=120)
    first = next(iter(stream)).event
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        trials, _ = _children(channel, first.job_id)
        if any(t.state == jobs_pb2.JOB_STATE_RUNNING for t in trials):
            break
        time.sleep(0.05)
    stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=first.job_id))
    cancelled_at = time.monotonic()
    assert [r.event for r in stream][-1].state == jobs_pb2.JOB_STATE_CANCELLED
    trials, _ = _children(channel, first.job_id)
    assert trials and all(t.state == jobs_pb2.JOB_STATE_CANCELLED for t in trials)
    assert time.monotonic() - cancelled_at < 5
    code, _ = refused(
        lambda: models(channel).GetModel(models_pb2.GetModelRequest(model_id="never-registered"))
    )
    assert code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"space": {}}, "space"),
        ({"space": {"max_depth": 3}}, "space.max_depth"),
        ({"space": {"max_depth": []}}, "space.max_depth"),
        ({"space": {"max_depth": {"low": 1, "high": 4}}}, "space.max_depth"),
        ({"space": {"max_depth": [-1]}}, "space.max_depth"),
        ({"cv_folds": 1}, "cv_folds"),
        ({"scoring": "r3"}, "scoring"),
        ({"n_candidates": -1}, "n_candidates"),
        ({"halving": jobs_pb2.Halving(resource="criterion", max_resources=9)}, "halving.resource"),
        ({"halving": jobs_pb2.Halving(resource="n_estimators")}, "halving.max_resources"),
        ({"target": "nope"}, "train.target"),
    ],
)
def test_bad_searches_are_refused_naming_the_field(channel, change, field) -> None:
    space = change.pop("space", {"max_depth": [2, 3]})
    target = change.pop("target", None)
    request = search_request("diabetes", space, **change)
    if target:
        request.train.target = target
    code, details = refused(lambda: list(jobs(channel).Search(request, timeout=30)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert details.startswith(f"{field}:"), details


def test_random_classification_equals_randomized_search_cv(channel) -> None:
    space = {
        "max_depth": {"low": 1, "high": 6, "int": True},
        "min_samples_leaf": {"low": 0.01, "high": 0.2},
        "criterion": {"choice": ["gini", "entropy"]},
    }
    request = search_request("wine", space, estimator="decision_tree", n_candidates=7, cv_folds=3)
    result = _result(run_search(channel, request))
    X_train, X_test, y_train, y_test = holdout(builtin_frame("wine"))
    search = RandomizedSearchCV(
        DecisionTreeClassifier(random_state=42),
        {
            "max_depth": stats.randint(1, 7),
            "min_samples_leaf": stats.uniform(0.01, 0.19),
            "criterion": ["gini", "entropy"],
        },
        n_iter=7,
        random_state=42,
        cv=sklearn_cv(True, 3),
        scoring="accuracy",
    ).fit(X_train, y_train)
    assert_same_as_sklearn(result, search)
    expected = sk_metrics.accuracy_score(y_test, search.best_estimator_.predict(X_test))
    assert abs(result.metrics["accuracy"] - expected) <= 1e-9


def test_halving_classification_equals_halving_grid_search_cv(channel) -> None:
    space = {"max_depth": [1, 2, 3, 5], "criterion": ["gini", "entropy"]}
    halving = jobs_pb2.Halving(resource="n_estimators", min_resources=4, max_resources=36)
    request = search_request(
        "breast_cancer", space, cv_folds=3, halving=halving, scoring="balanced_accuracy"
    )
    result = _result(run_search(channel, request))
    X_train, _, y_train, _ = holdout(builtin_frame("breast_cancer"))
    search = HalvingGridSearchCV(
        RandomForestClassifier(random_state=42),
        space,
        resource="n_estimators",
        min_resources=4,
        max_resources=36,
        factor=3,
        cv=sklearn_cv(True, 3),
        scoring="balanced_accuracy",
        random_state=42,
    ).fit(X_train, y_train)
    assert_same_as_sklearn(result, search)
    assert result.scoring == "balanced_accuracy"
