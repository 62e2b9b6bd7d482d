"""Searches run through mlgate, and the same searches run by scikit-learn, for comparison."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np
import pandas as pd
from google.protobuf import json_format, struct_pb2
from sklearn import datasets
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from mlgate.v1 import jobs_pb2
from tests.support.gateway_calls import events_of, jobs

__all__ = [
    "assert_same_as_sklearn",
    "builtin_frame",
    "holdout",
    "run_search",
    "search_request",
    "sklearn_cv",
]


def builtin_frame(name: str) -> pd.DataFrame:
    loader = {
        "diabetes": datasets.load_diabetes,
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
    }[name]
    return loader(as_frame=True).frame


def holdout(
    frame: pd.DataFrame, target: str = "target", test_size: float = 0.2, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """Train's split of a built-in dataset's frame."""
    X, y = frame.drop(columns=[target]), frame[target]
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, random_state=seed
    )
    return X_train, X_test, y_train, y_test


def sklearn_cv(classification: bool, folds: int = 5, seed: int = 42) -> KFold | StratifiedKFold:
    splitter = StratifiedKFold if classification else KFold
    return splitter(n_splits=folds, shuffle=True, random_state=seed)


def search_request(
    dataset: str,
    space: Mapping[str, Any],
    *,
    estimator: str = "",
    params: Mapping[str, Any] | None = None,
    **fields: Any,
) -> jobs_pb2.SearchRequest:
    struct = struct_pb2.Struct()
    struct.update(dict(space))
    train = jobs_pb2.TrainRequest(dataset_id=dataset, target="target", estimator=estimator)
    if params:
        train.params.update(dict(params))
    for key in ("model_name", "random_seed"):
        if key in fields:
            setattr(train, key, fields.pop(key))
    request = jobs_pb2.SearchRequest(train=train, space=struct, **fields)
    return request


def run_search(channel: grpc.Channel, request: jobs_pb2.SearchRequest) -> list[jobs_pb2.JobEvent]:
    return events_of(jobs(channel).Search(request, timeout=600))


def plain(params: struct_pb2.Struct) -> dict[str, Any]:
    """Struct params with whole numbers as ints, as scikit-learn's candidates hold them."""
    out = {}
    for key, value in json_format.MessageToDict(params).items():
        out[key] = int(value) if isinstance(value, float) and value.is_integer() else value
    return out


def _same_params(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> bool:
    if set(ours) != set(theirs):
        return False
    for key, value in ours.items():
        other = theirs[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isclose(float(value), float(other), rel_tol=1e-12):
                return False
        elif value != other:
            return False
    return True


def assert_same_as_sklearn(result: jobs_pb2.SearchResult, search: Any) -> None:
    """``result`` holds the same candidates, in the same order, with the same mean and std
    scores (to 1e-9), ranks and best parameters as the fitted scikit-learn ``search``."""
    cv = search.cv_results_
    assert len(result.candidates) == len(cv["params"])
    for row, params, mean, std, rank in zip(
        result.candidates,
        cv["params"],
        cv["mean_test_score"],
        cv["std_test_score"],
        cv["rank_test_score"],
        strict=True,
    ):
        assert _same_params(plain(row.params), params), (plain(row.params), params)
        if np.isnan(mean):
            assert math.isnan(row.mean_score) and row.error
        else:
            assert abs(row.mean_score - mean) <= 1e-9, (row.mean_score, mean)
            assert abs(row.std_score - std) <= 1e-9, (row.std_score, std)
        assert row.rank == rank
    assert _same_params(plain(result.best_params), search.best_params_)
    assert abs(result.best_score - search.best_score_) <= 1e-9
