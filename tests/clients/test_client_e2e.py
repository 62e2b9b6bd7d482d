"""MLGateClient against the real embedded system: gateway, workers and memory broker."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest

from mlgate.v1 import jobs_pb2
from mlgate_client import MLGateClient, PredictResult, TrainResult, errors
from tests.support.proxy import Proxy
from tests.support.samples import (
    DIABETES_FEATURES,
    DOC_ROW,
    HOUSES_CSV,
    IRIS_ROW,
    SLOW_PARAMS,
)


def _assert_one_job_in_order(events: list[jobs_pb2.JobEvent]) -> None:
    assert len({e.job_id for e in events}) == 1
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)), f"gaps are fine, repeats and disorder are not: {seqs}"
    assert events[0].state == jobs_pb2.JOB_STATE_QUEUED
    assert sum(e.state in (3, 4, 5) for e in events) == 1 and events[-1].state in (3, 4, 5)


def test_train_then_predict_the_documented_row(client: MLGateClient) -> None:
    seen: list[jobs_pb2.JobEvent] = []
    result = client.train("diabetes", "target", features=DIABETES_FEATURES, on_event=seen.append)
    _assert_one_job_in_order(seen)
    assert seen[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
    assert isinstance(result, TrainResult)
    assert result.job_id == seen[0].job_id
    assert result.model_id.startswith("mdl_")
    assert set(result.metrics) == {"rmse", "mae", "r2"}
    assert all(math.isfinite(v) for v in result.metrics.values())

    prediction = client.predict(result.model_id, [DOC_ROW, DOC_ROW])
    assert isinstance(prediction, PredictResult)
    assert prediction.model_id == result.model_id
    assert len(prediction.predictions) == 2
    assert prediction.predictions[0] == prediction.predictions[1]
    assert prediction.predictions[0] == pytest.approx(208.6, abs=0.1)
    assert prediction.classes == () and prediction.probabilities == ()

    model = client.get_model(result.model_id)
    assert (model.job_id, model.dataset_id, model.target) == (result.job_id, "diabetes", "target")
    assert [f.name for f in model.features] == DIABETES_FEATURES
    assert (model.task, model.estimator) == ("regression", "random_forest")
    assert model.metrics == result.metrics
    job = client.get_job(result.job_id)
    assert (job.kind, job.state, job.model_id, job.dataset_id) == (
        "train",
        "succeeded",
        result.model_id,
        "diabetes",
    )


def test_classifier_predictions_carry_int_labels_and_probabilities(client: MLGateClient) -> None:
    result = client.train("iris", "target", task="classification", params={"n_estimators": 20})
    prediction = client.predict(result.model_id, [IRIS_ROW])
    assert prediction.classes == (0, 1, 2)
    [label] = prediction.predictions
    [probabilities] = prediction.probabilities
    assert label == 0
    assert sum(probabilities) == pytest.approx(1.0)
    assert prediction.classes[probabilities.index(max(probabilities))] == label
    assert client.get_model(result.model_id).classes == (0, 1, 2)


def test_submit_then_wait_and_watch(client: MLGateClient) -> None:
    job_id = client.submit_train("diabetes", "target", random_seed=7, test_size=0.25)
    assert job_id.startswith("job_")
    result = client.wait(job_id)
    assert isinstance(result, TrainResult) and result.job_id == job_id
    events = list(client.watch(job_id))
    _assert_one_job_in_order(events)
    assert [e.seq for e in client.watch(job_id, after_seq=events[1].seq)] == [
        e.seq for e in events[2:]
    ]
    # Watching after a finished job's last event: nothing more, at once, and no error.
    assert list(client.watch(job_id, after_seq=events[-1].seq)) == []
    model = client.get_model(result.model_id)
    assert model.test_rows == math.ceil(442 * 0.25)
    assert model.params["random_state"] == 7


def test_list_jobs_pages_and_filters(client: MLGateClient) -> None:
    first = client.train("diabetes", "target", features=DIABETES_FEATURES)
    second = client.train("iris", "target")
    predicted = client.predict(first.model_id, [DOC_ROW])
    everything = list(client.list_jobs(page_size=1))
    assert [j.id for j in everything] == [predicted.job_id, second.job_id, first.job_id]
    assert [j.id for j in client.list_jobs(kind="train")] == [second.job_id, first.job_id]
    assert [j.id for j in client.list_jobs(kind="predict", state="succeeded")] == [predicted.job_id]
    assert list(client.list_jobs(state="failed")) == []
    page = client.list_jobs_page(page_size=2)
    assert len(page.items) == 2 and page.next_page_token
    rest = client.list_jobs_page(page_size=2, page_token=page.next_page_token)
    assert [j.id for j in rest.items] == [first.job_id] and rest.next_page_token == ""


def test_gateway_errors_are_typed(client: MLGateClient) -> None:
    with pytest.raises(errors.NotFound):
        client.train("no-such-dataset", "target")
    with pytest.raises(errors.InvalidArgument) as caught:
        client.train("diabetes", "target", estimator="magic")
    assert caught.value.field == "estimator"
    with pytest.raises(errors.InvalidArgument) as caught:
        client.train("diabetes", "target", params={"max_depth": -1})
    assert caught.value.field == "params.max_depth"
    with pytest.raises(errors.InvalidArgument) as caught:
        client.get_job("not-a-job")
    assert caught.value.field == "job_id"
    with pytest.raises(errors.NotFound):
        client.get_model("mdl_" + "0" * 32)
    model_id = client.train("diabetes", "target", features=["age", "bmi"]).model_id
    with pytest.raises(errors.InvalidArgument, match="bmi"):
        client.predict(model_id, [{"age": 0.1}])


def test_a_failed_job_raises_job_failed_with_its_code(client: MLGateClient) -> None:
    one_class = b"x,label\n1,a\n2,a\n3,a\n4,a\n5,a\n"
    client.upload_dataset("one-class", io.BytesIO(one_class))
    with pytest.raises(errors.JobFailed) as caught:
        client.train("one-class", "label")
    failure = caught.value
    assert failure.code == "FAILED_PRECONDITION"
    job = client.get_job(failure.job_id)
    assert (job.state, job.error_code, job.error_message) == (
        "failed",
        "FAILED_PRECONDITION",
        failure.message,
    )


def test_a_cancelled_job_raises_job_cancelled(client: MLGateClient) -> None:
    # The slow job holds the only training slot, so the next one is still queued when cancelled.
    slow = client.submit_train("diabetes", "target", params=SLOW_PARAMS)

    def cancel_when_queued(event: jobs_pb2.JobEvent) -> None:
        if event.state == jobs_pb2.JOB_STATE_QUEUED:
            assert client.cancel_job(event.job_id).state == "cancelled"

    with pytest.raises(errors.JobCancelled) as caught:
        client.train("diabetes", "target", on_event=cancel_when_queued)
    assert client.get_job(caught.value.job_id).state == "cancelled"
    # Cancelling a job that has ended changes nothing.
    assert isinstance(client.wait(slow), TrainResult)
    assert client.cancel_job(slow).state == "succeeded"


def test_upload_a_csv_then_train_and_predict_on_it(client: MLGateClient, tmp_path) -> None:
    path = tmp_path / "houses.csv"
    path.write_text(HOUSES_CSV)
    dataset = client.upload_dataset("houses", path, chunk_size=16)
    assert (dataset.id, dataset.rows, dataset.builtin) == ("houses", 12, False)
    assert [(c.name, c.dtype) for c in dataset.columns] == [
        ("size", "integer"),
        ("colour", "string"),
        ("price", "integer"),
    ]
    assert dataset.size_bytes == len(HOUSES_CSV)
    assert client.get_dataset("houses") == dataset
    assert {"houses", "diabetes", "iris", "wine", "breast_cancer"} == {
        d.id for d in client.list_datasets(page_size=2)
    }
    result = client.train(
        "houses", "price", estimator="decision_tree", task="regression", test_size=0.25
    )
    [price] = client.predict(result.model_id, [{"size": 30, "colour": "red"}]).predictions
    assert isinstance(price, float)
    with pytest.raises(FileNotFoundError):
        client.upload_dataset("missing", tmp_path / "missing.csv")


def test_columns_predict_what_rows_predict(client: MLGateClient, tmp_path) -> None:
    """A dict of columns (lists, numpy arrays) is sent as typed arrays: integers as int64s,
    strings as strings, through the encoder of a model with a string feature."""
    import numpy as np

    path = tmp_path / "houses.csv"
    path.write_text(HOUSES_CSV)
    client.upload_dataset("houses", path)
    model_id = client.train(
        "houses", "price", estimator="decision_tree", task="regression", test_size=0.25
    ).model_id
    rows = [
        {"size": 30, "colour": "red"},
        {"size": 55, "colour": "blue"},
        {"size": 5, "colour": "pink"},
    ]
    by_rows = client.predict(model_id, rows)
    columns: dict[str, Any] = {"size": np.array([30, 55, 5]), "colour": ["red", "blue", "pink"]}
    by_columns = client.predict(model_id, columns)
    assert by_columns.predictions == by_rows.predictions
    assert by_columns.warnings == by_rows.warnings and "'pink' (1 row)" in by_columns.warnings[0]
    with pytest.raises(
        errors.InvalidArgument, match=r"columns\.size: a column holds values of one"
    ):
        client.predict(model_id, {"size": [30, "big"], "colour": ["red", "red"]})
    with pytest.raises(errors.InvalidArgument, match=r"columns\[1\] \('colour'\): has 1 values"):
        client.predict(model_id, {"size": [30, 40], "colour": ["red"]})


def test_models_list_get_and_delete(client: MLGateClient) -> None:
    older = client.train("diabetes", "target").model_id
    newer = client.train("wine", "target").model_id
    assert [m.id for m in client.list_models(page_size=1)] == [newer, older]
    client.delete_model(older)
    assert [m.id for m in client.list_models()] == [newer]
    with pytest.raises(errors.NotFound):
        client.get_model(older)
    with pytest.raises(errors.NotFound):
        client.predict(older, [DOC_ROW])


@pytest.mark.slow
def test_training_survives_a_dropped_connection(embedded_gateway: str) -> None:
    """The stream breaks after the first event; the client resumes with WatchJob and sees every
    later event once, and the same result the job recorded."""
    proxy = Proxy(embedded_gateway)
    seen: list[jobs_pb2.JobEvent] = []

    def cut_after_queued(event: jobs_pb2.JobEvent) -> None:
        seen.append(event)
        if len(seen) == 1:
            proxy.sever()

    try:
        with MLGateClient(proxy.address, timeout=60) as client:
            result = client.train(
                "diabetes", "target", params={"n_estimators": 200}, on_event=cut_after_queued
            )
            recorded = list(client.watch(result.job_id))
    finally:
        proxy.close()
    assert proxy.connections >= 2, "the stream was never broken: the test proved nothing"
    assert [e.seq for e in seen] == [e.seq for e in recorded]
    assert seen[-1] == recorded[-1]
    assert result.model_id == recorded[-1].train_result.model_id
