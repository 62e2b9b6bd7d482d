"""Prediction jobs with columnar input: the same numbers as rows and as scikit-learn, bit for bit,
on the embedded system and on gateway and worker processes over Redis and RabbitMQ; bad columns
refused with their statuses; the job record, its events and WatchJob as for rows."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grpc
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.model_selection import train_test_split

from mlgate.v1 import jobs_pb2
from tests.support.cluster import Cluster
from tests.support.gateway_calls import (
    DIABETES_FEATURES,
    README_ROW,
    assert_well_formed,
    events_of,
    jobs,
    refused,
    rows,
    trained_model,
)
from tests.support.system import gateway_settings, running_gateway

IRIS_FEATURES = list(load_iris(as_frame=True).frame.columns[:-1])


@functools.cache
def _forests() -> tuple[RandomForestRegressor, RandomForestClassifier]:
    """mlgate's default forests on diabetes and iris, fitted here by hand as training fits them."""
    diabetes = load_diabetes(as_frame=True).frame
    X, _, y, _ = train_test_split(
        diabetes[DIABETES_FEATURES], diabetes["target"], test_size=0.2, random_state=42
    )
    regressor = RandomForestRegressor(max_depth=3, n_estimators=100, random_state=42)
    iris = load_iris(as_frame=True).frame
    Xi, _, yi, _ = train_test_split(
        iris[IRIS_FEATURES], iris["target"], test_size=0.2, random_state=42
    )
    classifier = RandomForestClassifier(max_depth=3, n_estimators=100, random_state=42)
    return regressor.fit(X.to_numpy(), y), classifier.fit(Xi.to_numpy(), yi)


def columns_request(model_id: str, table: Mapping[str, Sequence[Any]]) -> jobs_pb2.PredictRequest:
    request = jobs_pb2.PredictRequest(model_id=model_id)
    for name, values in table.items():
        request.columns.add(name=name).doubles.values.extend(values)
    return request


def _sample(features: list[str], count: int, seed: int) -> dict[str, list[float]]:
    """``count`` rows drawn around the dataset's own values, column by column."""
    rng = np.random.default_rng(seed)
    return {name: rng.normal(0.0, 0.05, count).tolist() for name in features}


def _done(channel: grpc.Channel, request: jobs_pb2.PredictRequest) -> list[jobs_pb2.JobEvent]:
    events = events_of(jobs(channel).Predict(request, timeout=120))
    assert_well_formed(events)
    assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED, events[-1]
    return events


@pytest.fixture(scope="module", params=["embedded", "redis", "rabbitmq"])
def system(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, str]]:
    """(address, diabetes regressor id, iris classifier id) on one system."""
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "embedded":
        gateway = running_gateway(gateway_settings(tmp / "data"))
        address = gateway.address

        def stop() -> None:
            gateway.stop()

    elif request.param == "redis":
        from tests.support.redis import SHARED_URL, delete_namespace, require_redis

        require_redis()
        cluster = Cluster(tmp, "redis")
        address = cluster.start_gateway()
        cluster.start_workers(1)

        def stop() -> None:
            cluster.stop()
            delete_namespace(SHARED_URL, cluster.namespace)

    else:
        from tests.support.rabbitmq import SHARED_URL as RABBITMQ_URL
        from tests.support.rabbitmq import delete_namespace as delete_rabbitmq_namespace
        from tests.support.rabbitmq import require_rabbitmq

        require_rabbitmq()
        rabbit = Cluster(tmp, "rabbitmq")
        address = rabbit.start_gateway()
        rabbit.start_workers(1)

        def stop() -> None:
            rabbit.stop()
            delete_rabbitmq_namespace(RABBITMQ_URL, rabbit.namespace)

    try:
        with grpc.insecure_channel(address) as channel:
            regressor = trained_model(channel)
            classifier = trained_model(
                channel, jobs_pb2.TrainRequest(dataset_id="iris", target="target")
            )
        yield address, regressor, classifier
    finally:
        stop()


@pytest.fixture
def channel(system: tuple[str, str, str]) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(system[0]) as ch:
        yield ch


def test_columns_predict_what_rows_and_scikit_learn_predict(
    system: tuple[str, str, str], channel: grpc.Channel
) -> None:
    regressor_id = system[1]
    table = {name: [README_ROW[name]] for name in DIABETES_FEATURES}
    first = _done(channel, columns_request(regressor_id, table))[-1].predict_result
    assert first.predictions[0].number_value == 208.6445780005619
    # Larger than the one-walk path takes, so tree by tree answers: the same numbers.
    sample = _sample(DIABETES_FEATURES, 500, seed=1)
    by_columns = _done(channel, columns_request(regressor_id, sample))[-1].predict_result
    as_rows = [{name: sample[name][i] for name in DIABETES_FEATURES} for i in range(500)]
    request = jobs_pb2.PredictRequest(model_id=regressor_id, rows=rows(*as_rows))
    by_rows = _done(channel, request)[-1].predict_result
    got = [v.number_value for v in by_columns.predictions]
    assert got == [v.number_value for v in by_rows.predictions]
    X = np.array([sample[name] for name in DIABETES_FEATURES]).T
    assert got == _forests()[0].predict(X).tolist()
    assert by_columns.model_id == regressor_id


def test_a_classifier_answers_labels_and_probabilities_from_columns(
    system: tuple[str, str, str], channel: grpc.Channel
) -> None:
    classifier_id = system[2]
    iris = load_iris(as_frame=True).frame
    picked = iris.iloc[::7]
    table = {name: picked[name].tolist() for name in IRIS_FEATURES}
    # Integers are numbers too: one column as int64s (whole centimetres, rounded).
    request = columns_request(
        classifier_id, {k: v for k, v in table.items() if k != "petal width (cm)"}
    )
    whole = [round(v) for v in table["petal width (cm)"]]
    request.columns.add(name="petal width (cm)").int64s.values.extend(whole)
    result = _done(channel, request)[-1].predict_result
    X = picked[IRIS_FEATURES].to_numpy(dtype=np.float64, copy=True)
    X[:, IRIS_FEATURES.index("petal width (cm)")] = whole
    forest = _forests()[1]
    assert [v.number_value for v in result.predictions] == forest.predict(X).tolist()
    assert [c.number_value for c in result.classes] == [0, 1, 2]
    assert [list(p.values) for p in result.probabilities] == forest.predict_proba(X).tolist()
    as_rows = [{name: X[i, j] for j, name in enumerate(IRIS_FEATURES)} for i in range(len(X))]
    by_rows = _done(channel, jobs_pb2.PredictRequest(model_id=classifier_id, rows=rows(*as_rows)))
    assert list(by_rows[-1].predict_result.probabilities) == list(result.probabilities)


def test_a_prediction_of_a_cached_model_has_no_running_event(
    system: tuple[str, str, str], channel: grpc.Channel
) -> None:
    table = {name: [README_ROW[name]] for name in DIABETES_FEATURES}
    _done(channel, columns_request(system[1], table))  # the model is cached now
    events = _done(channel, columns_request(system[1], table))
    assert [e.state for e in events] == [jobs_pb2.JOB_STATE_QUEUED, jobs_pb2.JOB_STATE_SUCCEEDED]


def test_a_columnar_job_is_recorded_and_watched_like_any_other(
    system: tuple[str, str, str], channel: grpc.Channel
) -> None:
    table = _sample(DIABETES_FEATURES, 3, seed=2)
    events = _done(channel, columns_request(system[1], table))
    job_id = events[-1].job_id
    stub = jobs(channel)
    record = stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).job
    assert record.state == jobs_pb2.JOB_STATE_SUCCEEDED
    assert record.row_count == 3
    assert {c.name: list(c.doubles.values) for c in record.predict.columns} == table
    # Resuming after the first event replays the rest, ending with the same result.
    watched = events_of(stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id, after_seq=1)))
    assert watched == events[1:]
    listed = stub.ListJobs(jobs_pb2.ListJobsRequest(kind=jobs_pb2.JOB_KIND_PREDICT)).jobs
    summary = next(job for job in listed if job.id == job_id)
    assert not summary.predict.columns and summary.row_count == 3 and summary.truncated


def _bad(channel: grpc.Channel, request: jobs_pb2.PredictRequest) -> tuple[grpc.StatusCode, str]:
    return refused(lambda: events_of(jobs(channel).Predict(request, timeout=30)))


def test_bad_columns_are_refused_naming_the_column(
    system: tuple[str, str, str], channel: grpc.Channel
) -> None:
    model_id = system[1]
    good = {name: [README_ROW[name], 0.0] for name in DIABETES_FEATURES}
    invalid = grpc.StatusCode.INVALID_ARGUMENT

    # A column that is not a feature is ignored, and the result says so (docs/prediction.md).
    extra = _done(channel, columns_request(model_id, {**good, "height": [1.0, 2.0]}))
    result = extra[-1].predict_result
    assert list(result.warnings) == [
        f"ignored height: not a feature of this model (its features: {', '.join(DIABETES_FEATURES[:8])}, … and 1 more)"
    ]
    plain = _done(channel, columns_request(model_id, good))[-1].predict_result
    assert list(result.predictions) == list(plain.predictions)

    missing = columns_request(model_id, {k: v for k, v in good.items() if k != "bmi"})
    code, message = _bad(channel, missing)
    assert code == invalid and message.startswith(
        "columns ('bmi'): is missing (a blank in every row), and this model (random_forest, "
        "trained without impute) takes no blanks"
    ), message

    short = columns_request(model_id, {**good, "s6": [1.0]})
    code, message = _bad(channel, short)
    assert code == invalid and message.startswith("columns[8] ('s6'): has 1 values where")

    for bad in (float("nan"), float("inf"), 1e39):
        value = columns_request(model_id, {**good, "age": [0.0, bad]})
        code, message = _bad(channel, value)
        assert code == invalid and message.startswith("columns[0] ('age')[1]: "), message
    # NaN is a blank, which this model does not take.
    assert (
        "is blank (NaN)"
        in _bad(channel, columns_request(model_id, {**good, "age": [0.0, float("nan")]}))[1]
    )

    typed = columns_request(model_id, good)
    typed.columns[2].strings.values.extend(["fat", "thin"])
    code, message = _bad(channel, typed)
    assert code == invalid
    assert message == (
        "columns[2] ('bp'): is a numeric feature: send its values as doubles or int64s, not strings"
    )

    empty = columns_request(model_id, good)
    empty.columns[3].ClearField("doubles")
    assert _bad(channel, empty)[1] == "columns[3] ('s1'): has no values: set doubles or int64s"

    twice = columns_request(model_id, good)
    twice.columns.add(name="age").doubles.values.extend([1.0, 2.0])
    assert "repeats columns[0]" in _bad(channel, twice)[1]

    both = columns_request(model_id, good)
    both.rows.extend(rows(README_ROW))
    assert _bad(channel, both) == (
        invalid,
        "columns: send the rows as rows or as columns, not both",
    )

    nothing = columns_request(model_id, {name: [] for name in DIABETES_FEATURES})
    assert _bad(channel, nothing)[0] == invalid


def test_more_rows_than_allowed_are_refused_as_resource_exhausted(
    system: tuple[str, str, str], channel: grpc.Channel
) -> None:
    table = {name: [0.0] * 10_001 for name in DIABETES_FEATURES}
    code, message = _bad(channel, columns_request(system[1], table))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert message.startswith("10001 rows is over the limit of 10000")
