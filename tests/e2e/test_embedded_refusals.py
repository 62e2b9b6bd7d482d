"""The embedded system refuses bad requests at the edge, with the status and the field to fix,
and queues nothing for them."""

from __future__ import annotations

import math

import grpc
import pytest

from mlgate.v1 import datasets_pb2, jobs_pb2, models_pb2
from tests.support.gateway_calls import (
    README_ROW,
    datasets,
    diabetes_request,
    events_of,
    jobs,
    models,
    rows,
    rpc_code,
    rpc_details,
    train,
    trained_model,
)


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
    assert rpc_code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT
    assert rpc_details(excinfo).startswith(field)
    # Nothing was queued for a refused request.
    listed = jobs(channel).ListJobs(jobs_pb2.ListJobsRequest())
    assert list(listed.jobs) == []


def test_unknown_dataset_and_model_are_not_found(channel) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        train(channel, diabetes_request(dataset_id="never-uploaded"))
    assert rpc_code(excinfo) == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as excinfo:
        events_of(
            jobs(channel).Predict(
                jobs_pb2.PredictRequest(model_id="mdl_" + "0" * 32, rows=rows(README_ROW))
            )
        )
    assert rpc_code(excinfo) == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({k: v for k, v in README_ROW.items() if k != "bmi"}, "rows[1].bmi"),
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
    assert rpc_code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT
    assert rpc_details(excinfo).startswith(field)


def test_malformed_ids_are_invalid_arguments(channel) -> None:
    for call in (
        lambda: jobs(channel).GetJob(jobs_pb2.GetJobRequest(job_id="../x")),
        lambda: models(channel).GetModel(models_pb2.GetModelRequest(model_id="mdl_/../../x")),
        lambda: datasets(channel).GetDataset(datasets_pb2.GetDatasetRequest(dataset_id="A/B")),
    ):
        with pytest.raises(grpc.RpcError) as excinfo:
            call()
        assert rpc_code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT


def test_watch_of_unknown_job_is_not_found(channel) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        list(jobs(channel).WatchJob(jobs_pb2.WatchJobRequest(job_id="job_" + "f" * 32)))
    assert rpc_code(excinfo) == grpc.StatusCode.NOT_FOUND


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
        assert rpc_code(excinfo) == code, dataset_id
