"""End to end over a real gRPC channel against the embedded system (gateway, workers, memory broker)."""

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
    first_event,
    hang_up,
    jobs,
    models,
    rows,
    train,
    trained_model,
)


def _code(excinfo: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return excinfo.value.code()


def _details(excinfo: pytest.ExceptionInfo[grpc.RpcError]) -> str:
    return excinfo.value.details() or ""


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


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"dataset_id": ""}, "dataset_id"),
        ({"dataset_id": "../../etc/passwd"}, "dataset_id"),
        ({"target": "nope"}, "target"),
        ({"estimator": "deep_magic"}, "estimator"),
        ({"params": {"max_depth": "deep"}}, "params.max_depth"),
        ({"params": {"no_such_knob": 1}}, "params.no_such_knob"),
        ({"params": {"n_estimators": 2.5}}, "params.n_estimators"),
        ({"params": {"max_depth": math.nan}}, "params.max_depth"),
        ({"params": {"min_impurity_decrease": math.inf}}, "params.min_impurity_decrease"),
        ({"params": {"max_features": -math.inf}}, "params.max_features"),
        ({"test_size": 1.5}, "test_size"),
        ({"estimator": "logistic_regression"}, "estimator"),
    ],
)
def test_bad_training_requests_are_refused_naming_the_field(channel, request_fields, field) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        train(channel, diabetes_request(**request_fields))
    assert _code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT
    assert _details(excinfo).startswith(field)
    # Nothing was queued for a refused request.
    listed = jobs(channel).ListJobs(jobs_pb2.ListJobsRequest())
    assert list(listed.jobs) == []


def test_unknown_dataset_and_model_are_not_found(channel) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        train(channel, diabetes_request(dataset_id="never-uploaded"))
    assert _code(excinfo) == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as excinfo:
        events_of(
            jobs(channel).Predict(
                jobs_pb2.PredictRequest(model_id="mdl_" + "0" * 32, rows=rows(README_ROW))
            )
        )
    assert _code(excinfo) == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({k: v for k, v in README_ROW.items() if k != "bmi"}, "rows[1].bmi"),
        ({**README_ROW, "height": 1.8}, "rows[1].height"),
        ({**README_ROW, "bp": "high"}, "rows[1].bp"),
        ({**README_ROW, "bp": None}, "rows[1].bp"),
        ({**README_ROW, "bmi": math.nan}, "rows[1].bmi"),
        ({**README_ROW, "s1": math.inf}, "rows[1].s1"),
        ({**README_ROW, "s6": -math.inf}, "rows[1].s6"),
    ],
)
def test_bad_rows_are_refused_naming_row_and_feature(channel, row, field) -> None:
    model_id = trained_model(channel)
    with pytest.raises(grpc.RpcError) as excinfo:
        events_of(
            jobs(channel).Predict(
                jobs_pb2.PredictRequest(model_id=model_id, rows=rows(README_ROW, row))
            )
        )
    assert _code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT
    assert _details(excinfo).startswith(field)


def test_malformed_ids_are_invalid_arguments(channel) -> None:
    for call in (
        lambda: jobs(channel).GetJob(jobs_pb2.GetJobRequest(job_id="../x")),
        lambda: models(channel).GetModel(models_pb2.GetModelRequest(model_id="mdl_/../../x")),
        lambda: datasets(channel).GetDataset(datasets_pb2.GetDatasetRequest(dataset_id="A/B")),
    ):
        with pytest.raises(grpc.RpcError) as excinfo:
            call()
        assert _code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT


def test_watch_resumes_after_a_sequence_number_without_gaps_or_duplicates(channel) -> None:
    stub = jobs(channel)
    stream = stub.Train(diabetes_request())
    first = first_event(stream)
    assert first.state == jobs_pb2.JOB_STATE_QUEUED
    hang_up(stream)  # the client lost its stream; the job goes on

    watched = [r.event for r in stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=first.job_id))]
    assert_well_formed(watched)
    assert watched[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED

    resumed = [
        r.event
        for r in stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=first.job_id, after_seq=first.seq))
    ]
    assert resumed == watched[1:]
    middle = watched[2].seq
    assert [
        r.event
        for r in stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=first.job_id, after_seq=middle))
    ] == [e for e in watched if e.seq > middle]

    job = stub.GetJob(jobs_pb2.GetJobRequest(job_id=first.job_id)).job
    assert job.state == jobs_pb2.JOB_STATE_SUCCEEDED
    assert job.last_event == watched[-1]
    assert job.train.dataset_id == "diabetes"


def test_a_long_fit_shows_that_it_is_fitting(channel) -> None:
    # Fits for a second or more: far longer than the quarter second between progress events.
    events = train(channel, diabetes_request(params={"n_estimators": 1000, "max_depth": 12}))
    assert_well_formed(events)
    stages = [e.stage for e in events if e.state == jobs_pb2.JOB_STATE_RUNNING]
    assert stages[:2] == [jobs_pb2.STAGE_LOADING_DATA, jobs_pb2.STAGE_FITTING]
    assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED


def test_watch_of_unknown_job_is_not_found(channel) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        list(jobs(channel).WatchJob(jobs_pb2.WatchJobRequest(job_id="job_" + "f" * 32)))
    assert _code(excinfo) == grpc.StatusCode.NOT_FOUND


def test_cancel_a_queued_job(embedded, channel) -> None:
    stub = jobs(channel)
    # Hold the only training slot with a slow job, so the next one waits in the queue.
    slow = stub.Train(diabetes_request(params={"n_estimators": 400, "max_depth": 12}))
    slow_first = first_event(slow)
    waiting = stub.Train(diabetes_request())
    queued = first_event(waiting)
    cancelled = stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=queued.job_id)).job
    assert cancelled.state == jobs_pb2.JOB_STATE_CANCELLED
    rest = [r.event for r in waiting]
    assert rest[-1].state == jobs_pb2.JOB_STATE_CANCELLED
    assert_well_formed([queued, *rest])
    # Cancelling again changes nothing; the slow job is unaffected and succeeds.
    again = stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=queued.job_id)).job
    assert again.last_event == cancelled.last_event
    assert [r.event for r in slow][-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
    listed = models(channel).ListModels(models_pb2.ListModelsRequest()).models
    assert [m.job_id for m in listed] == [slow_first.job_id]


def test_list_jobs_pages_and_filters(channel) -> None:
    stub = jobs(channel)
    model_id = trained_model(channel)
    for _ in range(4):
        events_of(stub.Predict(jobs_pb2.PredictRequest(model_id=model_id, rows=rows(README_ROW))))
    seen, token, pages = [], "", 0
    while True:
        page = stub.ListJobs(jobs_pb2.ListJobsRequest(page_size=2, page_token=token))
        seen += list(page.jobs)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3 and len(seen) == 5
    assert [j.create_time.ToNanoseconds() for j in seen] == sorted(
        (j.create_time.ToNanoseconds() for j in seen), reverse=True
    )
    assert seen[-1].kind == jobs_pb2.JOB_KIND_TRAIN
    predicts = stub.ListJobs(jobs_pb2.ListJobsRequest(kind=jobs_pb2.JOB_KIND_PREDICT)).jobs
    assert len(predicts) == 4
    assert all(j.state == jobs_pb2.JOB_STATE_SUCCEEDED for j in predicts)
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.ListJobs(jobs_pb2.ListJobsRequest(page_token="garbage"))
    assert _code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT


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


def test_bad_uploads_are_refused(channel) -> None:
    stub = datasets(channel)
    for dataset_id, chunk, code in [
        ("diabetes", b"a,b\n1,2\n", grpc.StatusCode.ALREADY_EXISTS),
        ("empty", b"", grpc.StatusCode.INVALID_ARGUMENT),
        ("Bad/Name", b"a,b\n1,2\n", grpc.StatusCode.INVALID_ARGUMENT),
        ("one-column", b"a\n1\n", grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        with pytest.raises(grpc.RpcError) as excinfo:
            stub.UploadDataset(
                iter([datasets_pb2.UploadDatasetRequest(dataset_id=dataset_id, chunk=chunk)])
            )
        assert _code(excinfo) == code, dataset_id


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
    assert _code(excinfo) == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as excinfo:
        events_of(
            jobs(channel).Predict(jobs_pb2.PredictRequest(model_id=first, rows=rows(README_ROW)))
        )
    assert _code(excinfo) == grpc.StatusCode.NOT_FOUND
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


def test_jobs_survive_a_gateway_restart(tmp_path) -> None:
    from tests.support.system import gateway_settings, running_gateway

    settings = gateway_settings(tmp_path / "data")
    first = running_gateway(settings)
    with grpc.insecure_channel(first.address) as ch:
        events = train(ch, diabetes_request())
    first.stop()
    second = running_gateway(settings)
    try:
        with grpc.insecure_channel(second.address) as ch:
            stub = jobs(ch)
            job = stub.GetJob(jobs_pb2.GetJobRequest(job_id=events[0].job_id)).job
            assert job.state == jobs_pb2.JOB_STATE_SUCCEEDED
            watched = [r.event for r in stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job.id))]
            assert watched == events
            model_id = events[-1].train_result.model_id
            predicted = events_of(
                stub.Predict(jobs_pb2.PredictRequest(model_id=model_id, rows=rows(README_ROW)))
            )
            assert predicted[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
    finally:
        second.stop()


def test_an_embedded_restart_finishes_the_jobs_it_had_accepted(tmp_path) -> None:
    from tests.support.system import gateway_settings, running_gateway

    settings = gateway_settings(tmp_path / "data")
    # A gateway whose workers never ran: the job is accepted, then the process goes away.
    first = running_gateway(settings, embedded_workers=False)
    with grpc.insecure_channel(first.address) as ch:
        stream = jobs(ch).Train(diabetes_request())
        queued = first_event(stream)
        hang_up(stream)
    first.stop()
    second = running_gateway(settings)
    try:
        with grpc.insecure_channel(second.address) as ch:
            watched = [
                r.event for r in jobs(ch).WatchJob(jobs_pb2.WatchJobRequest(job_id=queued.job_id))
            ]
        assert_well_formed(watched)
        assert watched[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
    finally:
        second.stop()
