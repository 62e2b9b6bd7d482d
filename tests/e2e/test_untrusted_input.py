"""What a crafted artifact or an awkward input does to the embedded system: a clear error, and
the worker lives on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from sklearn.datasets import load_iris

from mlgate.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from mlgate.v1 import datasets_pb2, jobs_pb2, models_pb2
from tests.support.artifacts import aim_child_outside, rewrite_model
from tests.support.background import BackgroundGateway
from tests.support.gateway_calls import (
    README_ROW,
    datasets,
    diabetes_request,
    events_of,
    jobs,
    models,
    refused,
    rows,
    trained_model,
)
from tests.support.oip import fp64_output, matrix_request
from tests.support.samples import HOUSES_CSV
from workers.parallelism import fit_cores


def _objects(embedded: BackgroundGateway) -> Path:
    return embedded.settings.data_dir / "storage"


def _predict(
    channel: grpc.Channel, model_id: str, row: dict[str, float] = README_ROW
) -> jobs_pb2.JobEvent:
    request = jobs_pb2.PredictRequest(model_id=model_id, rows=rows(row))
    return events_of(jobs(channel).Predict(request, timeout=60))[-1]


def test_a_crafted_tree_fails_its_prediction_as_data_loss_and_the_worker_lives_on(
    embedded: BackgroundGateway, channel: grpc.Channel
) -> None:
    crafted = trained_model(channel, diabetes_request(estimator="decision_tree"))
    forest = trained_model(channel, diabetes_request(params={"n_estimators": 5}))
    # Unchecked, either model reads far outside its tree and kills the process.
    for model_id in (crafted, forest):
        rewrite_model(_objects(embedded), model_id, aim_child_outside)
        failed = _predict(channel, model_id)
        assert failed.state == jobs_pb2.JOB_STATE_FAILED
        assert failed.error.code == "DATA_LOSS"
        assert "outside the tree" in failed.error.message
    sound = trained_model(channel)
    assert _predict(channel, sound).state == jobs_pb2.JOB_STATE_SUCCEEDED


def _claims_one_class(model: Any) -> None:
    model.init_.class_prior_ = np.array([1.0])
    model.init_.classes_ = np.array([0.0])
    model.init_.n_classes_ = 1


def test_a_boosting_model_whose_init_claims_one_class_is_refused_and_the_gateway_lives_on(
    embedded: BackgroundGateway, channel: grpc.Channel
) -> None:
    # The probe's case: unchecked, ModelInfer of 1,000 rows ended in "malloc(): invalid size" and
    # took `mlgate serve` down with it.
    request = jobs_pb2.TrainRequest(
        dataset_id="iris", target="target", estimator="gradient_boosting"
    )
    request.params.update({"n_estimators": 5})
    crafted = trained_model(channel, request)
    rewrite_model(_objects(embedded), crafted, _claims_one_class)
    X = np.tile(load_iris().data, (7, 1))[:1000]
    infer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer
    code, message = refused(lambda: infer(matrix_request(crafted, X, raw=True), timeout=60))
    assert code == grpc.StatusCode.DATA_LOSS
    assert "init_'s classes disagree with the model's" in message
    row = dict(zip(load_iris().feature_names, [5.1, 3.5, 1.4, 0.2], strict=True))
    failed = _predict(channel, crafted, row)
    assert (failed.state, failed.error.code) == (jobs_pb2.JOB_STATE_FAILED, "DATA_LOSS")
    # Nor is it handed to whoever imports it: the export is checked as a worker loads it.
    export = models(channel).ExportModel
    code, message = refused(
        lambda: list(export(models_pb2.ExportModelRequest(model_id=crafted), timeout=120))
    )
    assert code == grpc.StatusCode.DATA_LOSS
    assert "init_'s classes disagree with the model's" in message
    sound = trained_model(channel, request)
    assert fp64_output(infer(matrix_request(sound, X, raw=True), timeout=60)).shape == (1000,)
    exported = list(export(models_pb2.ExportModelRequest(model_id=sound), timeout=120))
    assert exported[0].model.id == sound and len(exported) > 1


def test_n_jobs_from_a_request_is_capped_by_the_worker_and_recorded_as_run(
    embedded: BackgroundGateway, channel: grpc.Channel
) -> None:
    model_id = trained_model(channel, diabetes_request(params={"n_jobs": 1000}))
    record = models(channel).GetModel(models_pb2.GetModelRequest(model_id=model_id)).model
    settings = embedded.settings.worker
    assert record.params["n_jobs"] == fit_cores(settings.fit_cores, settings.train_concurrency)


def _refusal(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as excinfo:
        call()
    return excinfo.value


def test_a_number_beyond_float32_is_refused_at_the_gateway_naming_the_feature(
    channel: grpc.Channel,
) -> None:
    # scikit-learn's trees refuse it; the fast forest path alone would have predicted with inf.
    model_id = trained_model(channel, diabetes_request(params={"n_estimators": 5}))
    request = jobs_pb2.PredictRequest(model_id=model_id, rows=rows({**README_ROW, "bmi": 1e308}))
    error = _refusal(lambda: events_of(jobs(channel).Predict(request, timeout=60)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("rows[0].bmi: 1e+308 is out of range")


def test_a_test_size_that_leaves_no_training_rows_is_refused_at_the_gateway(
    channel: grpc.Channel,
) -> None:
    request = diabetes_request(test_size=0.999999)
    error = _refusal(lambda: events_of(jobs(channel).Train(request, timeout=60)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error.details() or ""
    assert details.startswith("test_size: 0.999999 of diabetes's 442 rows leaves 0 to train on")


def test_a_corrupt_manifest_is_skipped_by_list_and_reported_by_get(
    embedded: BackgroundGateway, channel: grpc.Channel
) -> None:
    sound = trained_model(channel, diabetes_request(estimator="linear"))
    broken = trained_model(channel, diabetes_request(estimator="ridge"))
    (_objects(embedded) / "models" / broken / "manifest.json").write_text("{not json")
    listed = models(channel).ListModels(models_pb2.ListModelsRequest()).models
    assert [m.id for m in listed] == [sound]
    error = _refusal(lambda: models(channel).GetModel(models_pb2.GetModelRequest(model_id=broken)))
    assert error.code() == grpc.StatusCode.DATA_LOSS
    assert "corrupt manifest" in (error.details() or "")


def test_an_unseen_category_is_ignored_and_named_in_the_results_warnings(
    channel: grpc.Channel,
) -> None:
    upload = datasets_pb2.UploadDatasetRequest(dataset_id="houses", chunk=HOUSES_CSV.encode())
    datasets(channel).UploadDataset(iter([upload]))
    model_id = trained_model(
        channel, jobs_pb2.TrainRequest(dataset_id="houses", target="price", estimator="ridge")
    )
    request = jobs_pb2.PredictRequest(
        model_id=model_id,
        rows=rows(
            {"size": 30, "colour": "purple"},
            {"size": 30, "colour": "red"},
            {"size": 40, "colour": "purple"},
        ),
    )
    result = events_of(jobs(channel).Predict(request, timeout=60))[-1].predict_result
    assert len(result.predictions) == 3
    assert list(result.warnings) == [
        "feature colour: unseen category 'purple' (2 rows) ignored: the model never saw them in "
        "training, so these rows were predicted as if the feature were absent"
    ]
    known = jobs_pb2.PredictRequest(model_id=model_id, rows=rows({"size": 30, "colour": "blue"}))
    assert not events_of(jobs(channel).Predict(known, timeout=60))[-1].predict_result.warnings
