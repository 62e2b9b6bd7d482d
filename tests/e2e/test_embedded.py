"""End to end over a real gRPC channel against the embedded system (gateway, workers, memory
broker): training, prediction, uploaded datasets and models."""

from __future__ import annotations

import math
import threading

import grpc
import pytest
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import mean_squared_error
from sklearn.model_selection import train_test_split

from mlgate.v1 import datasets_pb2, jobs_pb2, models_pb2
from tests.support.gateway_calls import (
    DIABETES_FEATURES,
    README_ROW,
    assert_well_formed,
    datasets,
    diabetes_request,
    events_of,
    jobs,
    models,
    rows,
    rpc_code,
    train,
    trained_model,
)


def test_train_streams_its_stages_and_reproduces_the_original_forest(channel) -> None:
    events = train(channel, diabetes_request())
    assert_well_formed(events)
    stages = [e.stage for e in events if e.state == jobs_pb2.JOB_STATE_RUNNING]
    # Progress is paced (workers.progress): the first stage at once, a later one if it lasted.
    assert stages[0] == jobs_pb2.STAGE_LOADING_DATA
    assert stages == sorted(stages)
    assert set(stages) <= {
        jobs_pb2.STAGE_LOADING_DATA,
        jobs_pb2.STAGE_FITTING,
        jobs_pb2.STAGE_EVALUATING,
        jobs_pb2.STAGE_SAVING,
    }
    progress = [e.progress for e in events if e.state == jobs_pb2.JOB_STATE_RUNNING]
    assert progress == sorted(progress) and all(0 < p < 1 for p in progress)
    done = events[-1]
    assert done.state == jobs_pb2.JOB_STATE_SUCCEEDED
    assert set(done.train_result.metrics) == {"rmse", "mae", "r2"}
    assert 0 < done.train_result.fit_seconds < 60

    # The original design, by hand: the same split, the same forest, the same rmse.
    frame = load_diabetes(as_frame=True).frame
    X_train, X_test, y_train, y_test = train_test_split(
        frame[DIABETES_FEATURES], frame["target"], test_size=0.2, random_state=42
    )
    forest = RandomForestRegressor(max_depth=3, n_estimators=100, random_state=42)
    forest.fit(X_train, y_train)
    expected = math.sqrt(mean_squared_error(y_test, forest.predict(X_test)))
    assert done.train_result.metrics["rmse"] == pytest.approx(expected, rel=1e-9)

    model = models(channel).GetModel(
        models_pb2.GetModelRequest(model_id=done.train_result.model_id)
    )
    record = model.model
    assert record.job_id == done.job_id
    assert record.dataset_id == "diabetes"
    assert [f.name for f in record.features] == DIABETES_FEATURES
    assert {f.dtype for f in record.features} == {"numeric"}
    assert record.task == jobs_pb2.TASK_REGRESSION
    assert record.estimator == "random_forest"
    assert record.params["max_depth"] == 3 and record.params["n_estimators"] == 100
    assert record.train_rows == len(X_train) and record.test_rows == len(X_test)
    assert record.sklearn_version and len(record.sha256) == 64


def test_predict_returns_one_prediction_per_row_in_order(channel) -> None:
    model_id = trained_model(channel)
    frame = load_diabetes(as_frame=True).frame
    X_train, _, y_train, _ = train_test_split(
        frame[DIABETES_FEATURES], frame["target"], test_size=0.2, random_state=42
    )
    forest = RandomForestRegressor(max_depth=3, n_estimators=100, random_state=42).fit(
        X_train, y_train
    )
    sample = frame[DIABETES_FEATURES].iloc[:5].to_dict("records")
    request = jobs_pb2.PredictRequest(model_id=model_id, rows=rows(README_ROW, *sample))
    events = events_of(jobs(channel).Predict(request, timeout=60))
    assert_well_formed(events)
    result = events[-1].predict_result
    assert result.model_id == model_id
    got = [v.number_value for v in result.predictions]
    import pandas as pd

    expected = forest.predict(pd.DataFrame([README_ROW, *sample])[DIABETES_FEATURES])
    assert got == pytest.approx(list(expected), rel=1e-12)
    assert not result.classes


def test_classifier_predictions_carry_labels_and_probabilities(channel) -> None:
    request = jobs_pb2.TrainRequest(dataset_id="iris", target="target")
    events = train(channel, request)
    assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED, events[-1]
    metrics = events[-1].train_result.metrics
    assert {"accuracy", "f1_macro", "roc_auc", "log_loss"} <= set(metrics)
    assert 0.8 < metrics["accuracy"] <= 1.0
    model_id = events[-1].train_result.model_id
    flower = {
        "sepal length (cm)": 5.1,
        "sepal width (cm)": 3.5,
        "petal length (cm)": 1.4,
        "petal width (cm)": 0.2,
    }
    predicted = events_of(
        jobs(channel).Predict(jobs_pb2.PredictRequest(model_id=model_id, rows=rows(flower)))
    )[-1].predict_result
    assert [c.number_value for c in predicted.classes] == [0, 1, 2]
    assert predicted.predictions[0].number_value == 0
    (probabilities,) = predicted.probabilities
    assert len(probabilities.values) == 3
    assert sum(probabilities.values) == pytest.approx(1.0)
    assert max(probabilities.values) == probabilities.values[0]


def test_a_job_that_fails_in_the_worker_ends_failed_and_the_worker_lives_on(channel) -> None:
    stub = datasets(channel)
    csv = b"x,label\n1,a\n2,a\n3,a\n4,a\n5,a\n"  # one class only: training cannot succeed
    stub.UploadDataset(iter([datasets_pb2.UploadDatasetRequest(dataset_id="one-class", chunk=csv)]))
    events = train(channel, jobs_pb2.TrainRequest(dataset_id="one-class", target="label"))
    assert_well_formed(events)
    failed = events[-1]
    assert failed.state == jobs_pb2.JOB_STATE_FAILED
    assert failed.error.code == "FAILED_PRECONDITION"
    assert "two classes" in failed.error.message
    # The same worker takes the next job.
    assert train(channel, diabetes_request())[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED


def test_uploaded_csv_trains_and_predicts_with_string_features(channel) -> None:
    lines = ["size,colour,price"]
    for i in range(60):
        colour = ["red", "green", "blue"][i % 3]
        lines.append(f"{i},{colour},{i * 2 + (10 if colour == 'red' else 0)}.5")
    data = ("\n".join(lines) + "\n").encode()
    chunks = [data[i : i + 100] for i in range(0, len(data), 100)]
    requests = [datasets_pb2.UploadDatasetRequest(dataset_id="houses", chunk=chunks[0])]
    requests += [datasets_pb2.UploadDatasetRequest(chunk=c) for c in chunks[1:]]
    uploaded = datasets(channel).UploadDataset(iter(requests)).dataset
    assert uploaded.rows == 60
    assert [(c.name, c.dtype) for c in uploaded.columns] == [
        ("size", "integer"),
        ("colour", "string"),
        ("price", "numeric"),
    ]
    got = datasets(channel).GetDataset(datasets_pb2.GetDatasetRequest(dataset_id="houses"))
    assert got.dataset == uploaded
    listed = datasets(channel).ListDatasets(datasets_pb2.ListDatasetsRequest()).datasets
    assert {d.id for d in listed} == {"diabetes", "iris", "wine", "breast_cancer", "houses"}

    events = train(
        channel, jobs_pb2.TrainRequest(dataset_id="houses", target="price", estimator="ridge")
    )
    assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED, events[-1]
    model_id = events[-1].train_result.model_id
    predicted = events_of(
        jobs(channel).Predict(
            jobs_pb2.PredictRequest(
                model_id=model_id,
                rows=rows({"size": 10, "colour": "red"}, {"size": 10, "colour": "blue"}),
            )
        )
    )[-1].predict_result
    red, blue = (v.number_value for v in predicted.predictions)
    assert red - blue == pytest.approx(10, abs=1.0)


def test_models_list_and_delete(channel) -> None:
    first = trained_model(channel)
    second = trained_model(channel, diabetes_request(estimator="extra_trees"))
    stub = models(channel)
    listed = stub.ListModels(models_pb2.ListModelsRequest(page_size=1))
    assert [m.id for m in listed.models] == [second]
    rest = stub.ListModels(models_pb2.ListModelsRequest(page_token=listed.next_page_token))
    assert [m.id for m in rest.models] == [first]
    assert rest.next_page_token == ""
    stub.DeleteModel(models_pb2.DeleteModelRequest(model_id=first))
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.GetModel(models_pb2.GetModelRequest(model_id=first))
    assert rpc_code(excinfo) == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as excinfo:
        events_of(
            jobs(channel).Predict(jobs_pb2.PredictRequest(model_id=first, rows=rows(README_ROW)))
        )
    assert rpc_code(excinfo) == grpc.StatusCode.NOT_FOUND
    assert [m.id for m in stub.ListModels(models_pb2.ListModelsRequest()).models] == [second]


def test_concurrent_predictions_all_answer(channel) -> None:
    model_id = trained_model(channel)
    results: list[float] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            events = events_of(
                jobs(channel).Predict(
                    jobs_pb2.PredictRequest(model_id=model_id, rows=rows(README_ROW))
                )
            )
            results.append(events[-1].predict_result.predictions[0].number_value)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(results) == 16 and len(set(results)) == 1
