"""The gateway's edge on the embedded system: what a client is told when a request or the stored
data is wrong, with short messages that never show the server's paths or its drivers."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path
from typing import Any

import grpc
import pytest

from mlgate.v1 import datasets_pb2, jobs_pb2, models_pb2
from tests.support.background import BackgroundGateway
from tests.support.gateway_calls import (
    README_ROW,
    datasets,
    events_of,
    jobs,
    models,
    refused,
    rows,
    trained_model,
)

MODEL_ID = "mdl_" + "ab" * 16


def _token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _storage(embedded: BackgroundGateway) -> Path:
    return embedded.settings.data_dir / "storage"


@pytest.mark.parametrize(
    "token",
    [
        _token([10**30, "job_" + "0" * 32]),  # once an OverflowError from SQLite
        _token([-1, "x"]),
        _token({"create": 1}),
        _token([1, "x" * 500]),
        "A" * 10_000,
        "not base64!",
    ],
    ids=["huge-number", "negative", "not-a-pair", "long-id", "long-token", "not-base64"],
)
def test_a_forged_page_token_is_an_invalid_argument_on_every_list(channel, token) -> None:
    for call in (
        lambda: jobs(channel).ListJobs(jobs_pb2.ListJobsRequest(page_token=token)),
        lambda: models(channel).ListModels(models_pb2.ListModelsRequest(page_token=token)),
        lambda: datasets(channel).ListDatasets(datasets_pb2.ListDatasetsRequest(page_token=token)),
    ):
        code, details = refused(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("page_token: is not a token this server issued")


def test_a_directory_where_a_manifest_should_be_is_data_loss_without_server_paths(
    embedded, channel
) -> None:
    storage = _storage(embedded)
    (storage / "models" / MODEL_ID / "manifest.json").mkdir(parents=True)
    (storage / "datasets" / "houses.json").mkdir(parents=True)
    for call in (
        lambda: models(channel).GetModel(models_pb2.GetModelRequest(model_id=MODEL_ID)),
        lambda: events_of(
            jobs(channel).Predict(jobs_pb2.PredictRequest(model_id=MODEL_ID, rows=rows(README_ROW)))
        ),
    ):
        code, details = refused(call)
        assert code == grpc.StatusCode.DATA_LOSS
        assert details.startswith(f"model {MODEL_ID} has a corrupt manifest")
        assert str(storage) not in details
    code, details = refused(
        lambda: datasets(channel).GetDataset(datasets_pb2.GetDatasetRequest(dataset_id="houses"))
    )
    assert code == grpc.StatusCode.DATA_LOSS
    assert details.startswith("dataset 'houses' has a corrupt schema")
    assert str(storage) not in details


def test_a_manifest_that_is_not_json_is_data_loss(embedded, channel) -> None:
    manifest = _storage(embedded) / "models" / MODEL_ID / "manifest.json"
    manifest.parent.mkdir(parents=True)
    for garbage in (b"\xff\xfe not json", b"[1, 2]", b'{"format": "skops", "model": 3}'):
        manifest.write_bytes(garbage)
        assert refused(
            lambda: models(channel).GetModel(models_pb2.GetModelRequest(model_id=MODEL_ID))
        ) == (
            grpc.StatusCode.DATA_LOSS,
            f"model {MODEL_ID} has a corrupt manifest: it is not the JSON mlgate writes",
        )


def test_a_ten_thousand_column_dataset_gets_a_short_invalid_argument(channel) -> None:
    names = [f"column_{i:05d}" for i in range(10_000)]
    csv = "\n".join([",".join(names), *[",".join(["1"] * len(names))] * 3]).encode()
    datasets(channel).UploadDataset(
        iter([datasets_pb2.UploadDatasetRequest(dataset_id="wide", chunk=csv)])
    )
    code, details = refused(
        lambda: events_of(
            jobs(channel).Train(jobs_pb2.TrainRequest(dataset_id="wide", target="nope"))
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("target: 'nope' is not a column of wide; columns: column_00000, ")
    assert details.endswith(", … and 9992 more")
    assert len(details) < 300


def test_a_huge_value_in_a_row_gets_a_short_invalid_argument(channel) -> None:
    row = {**README_ROW, "bp": "y" * 20_000}
    request = jobs_pb2.PredictRequest(model_id=trained_model(channel), rows=rows(row))
    code, details = refused(lambda: events_of(jobs(channel).Predict(request)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("rows[0].bp: must be a finite numeric value, not 'yyy")
    assert re.search(r"… \(20002 characters\)", details), details
    assert len(details) < 300


def test_a_huge_name_in_a_row_is_ignored_with_a_short_warning(channel) -> None:
    row = {**README_ROW, "x" * 20_000: 1.0}
    request = jobs_pb2.PredictRequest(model_id=trained_model(channel), rows=rows(row))
    (warning,) = events_of(jobs(channel).Predict(request))[-1].predict_result.warnings
    assert warning.startswith("ignored xxxx") and "… (20000 characters)" in warning
    assert len(warning) < 300


def test_a_removed_storage_directory_is_unavailable_not_empty(embedded, channel) -> None:
    model_id = trained_model(channel)
    csv = b"a,b\n1,2\n3,4\n"
    upload = datasets_pb2.UploadDatasetRequest(dataset_id="pairs", chunk=csv)
    datasets(channel).UploadDataset(iter([upload]))
    shutil.rmtree(_storage(embedded))
    expected = "the object store (local directory) is unreachable; try again shortly"
    for call in (
        lambda: models(channel).GetModel(models_pb2.GetModelRequest(model_id=model_id)),
        lambda: models(channel).ListModels(models_pb2.ListModelsRequest()),
        lambda: models(channel).DeleteModel(models_pb2.DeleteModelRequest(model_id=model_id)),
        lambda: datasets(channel).GetDataset(datasets_pb2.GetDatasetRequest(dataset_id="pairs")),
        lambda: datasets(channel).ListDatasets(datasets_pb2.ListDatasetsRequest()),
        lambda: datasets(channel).UploadDataset(iter([upload])),
        lambda: events_of(
            jobs(channel).Predict(jobs_pb2.PredictRequest(model_id=model_id, rows=rows(README_ROW)))
        ),
        lambda: events_of(
            jobs(channel).Train(jobs_pb2.TrainRequest(dataset_id="pairs", target="b"))
        ),
    ):
        assert refused(call) == (grpc.StatusCode.UNAVAILABLE, expected)
    # Nothing recreated the directory behind the operator's back.
    assert not _storage(embedded).exists()
