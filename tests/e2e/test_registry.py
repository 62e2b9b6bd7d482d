"""The model registry end to end on the embedded system: names, versions, aliases, references,
metadata, lineage, export and restarts."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pandas as pd

from mlgate.v1 import datasets_pb2, jobs_pb2, models_pb2
from storage.models import DEFAULT_MAX_MODEL_BYTES, Encoded
from tests.support.gateway_calls import (
    DIABETES_FEATURES,
    README_ROW,
    datasets,
    diabetes_request,
    events_of,
    jobs,
    models,
    rows,
)
from tests.support.registry_steps import (
    code_of,
    export,
    get_model,
    predict,
    set_alias,
    train_named,
    walk_the_registry,
)
from tests.support.system import RunningGateway, gateway_settings, running_gateway
from workers.formats import decode

SMALL = {"n_estimators": 10}


def test_the_registry_on_local_storage(embedded: RunningGateway, tmp_path: Path) -> None:
    root = tmp_path / "data" / "storage" / "models"
    with grpc.insecure_channel(embedded.address) as channel:
        walk_the_registry(channel, lambda m, sha: (root / m / f"{sha}.model").read_bytes())


def test_parallel_trains_of_one_name_get_consecutive_versions(tmp_path: Path) -> None:
    gateway = running_gateway(gateway_settings(tmp_path / "data", train_concurrency=3))
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            results: list[jobs_pb2.TrainResult] = []
            start = threading.Barrier(6)

            def submit() -> None:
                start.wait()
                results.append(train_named(channel, "rf", params=SMALL))

            threads = [threading.Thread(target=submit) for _ in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sorted(r.model_version for r in results) == [1, 2, 3, 4, 5, 6]
            listed = models(channel).ListModels(models_pb2.ListModelsRequest(name="rf")).models
            assert [m.version for m in listed] == [6, 5, 4, 3, 2, 1]
            by_version = {r.model_version: r.model_id for r in results}
            assert {m.version: m.id for m in listed} == by_version
            first = models(channel).ListModels(models_pb2.ListModelsRequest(name="rf", page_size=4))
            rest = models(channel).ListModels(
                models_pb2.ListModelsRequest(name="rf", page_token=first.next_page_token)
            )
            assert [m.version for m in first.models] == [6, 5, 4, 3]
            assert ([m.version for m in rest.models], rest.next_page_token) == ([2, 1], "")
    finally:
        gateway.stop()


def test_references_are_checked_and_resolved_at_the_gateway(channel: grpc.Channel) -> None:
    one = train_named(channel, "rf", params=SMALL)
    predicted = events_of(
        jobs(channel).Predict(jobs_pb2.PredictRequest(model_id="rf", rows=rows(README_ROW)))
    )
    # The job records the id the reference meant, and the result names it.
    job = jobs(channel).GetJob(jobs_pb2.GetJobRequest(job_id=predicted[0].job_id)).job
    assert job.predict.model_id == predicted[-1].predict_result.model_id == one.model_id

    for ref, code, words in [
        ("RF", grpc.StatusCode.INVALID_ARGUMENT, "model_id: 'RF' is not a model reference"),
        ("rf/0", grpc.StatusCode.INVALID_ARGUMENT, "model_id"),
        ("rf@1", grpc.StatusCode.INVALID_ARGUMENT, "model_id"),
        ("mdl_x", grpc.StatusCode.INVALID_ARGUMENT, "model_id"),
        ("other", grpc.StatusCode.NOT_FOUND, "no model is named 'other'"),
        ("rf/2", grpc.StatusCode.NOT_FOUND, "'rf' has no version 2"),
        ("rf@production", grpc.StatusCode.NOT_FOUND, "'rf' has no alias 'production'"),
    ]:
        request = jobs_pb2.PredictRequest(model_id=ref, rows=rows(README_ROW))
        assert code_of(events_of, jobs(channel).Predict(request))[0] == code, ref
        assert code_of(export, channel, ref)[0] == code, ref
        got, details = code_of(get_model, channel, ref)
        assert got == code and words in details, (ref, details)

    bad_name = diabetes_request(model_name="Bad Name")
    assert code_of(lambda: events_of(jobs(channel).Train(bad_name)))[1].startswith("model_name:")
    for alias_request, field in [
        (models_pb2.SetModelAliasRequest(name="rf", alias="Prod", version=1), "alias"),
        (models_pb2.SetModelAliasRequest(name="rf", alias="prod", version=0), "version"),
        (models_pb2.SetModelAliasRequest(name="", alias="prod", version=1), "name"),
    ]:
        code, details = code_of(models(channel).SetModelAlias, alias_request)
        assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, field)


def test_a_model_record_has_its_name_metadata_and_training_facts(channel: grpc.Channel) -> None:
    trained = train_named(channel, "diabetes-rf")
    set_alias(channel, "diabetes-rf", "staging", 1)
    update = models_pb2.UpdateModelRequest(
        model_id="diabetes-rf@staging", description="the README forest", set_tags={"team": "risk"}
    )
    updated = models(channel).UpdateModel(update).model
    model = get_model(channel, "diabetes-rf/1")
    assert model == updated
    assert (model.id, model.name, model.version) == (trained.model_id, "diabetes-rf", 1)
    assert (list(model.aliases), model.description, dict(model.tags)) == (
        ["staging"],
        "the README forest",
        {"team": "risk"},
    )
    diabetes = datasets(channel).GetDataset(datasets_pb2.GetDatasetRequest(dataset_id="diabetes"))
    assert model.dataset_id == "diabetes"
    assert model.dataset_sha256 == diabetes.dataset.sha256 != ""
    assert model.job_id and dict(model.metrics) == dict(trained.metrics)
    assert model.params["max_depth"] == 3
    assert set(model.feature_importances) == set(DIABETES_FEATURES)
    assert abs(sum(model.feature_importances.values()) - 1.0) < 1e-9
    assert max(model.feature_importances, key=model.feature_importances.__getitem__) in (
        "bmi",
        "s5",
    )

    removed = models_pb2.UpdateModelRequest(model_id=trained.model_id, remove_tags=["team"])
    assert dict(models(channel).UpdateModel(removed).model.tags) == {}
    too_long = models_pb2.UpdateModelRequest(model_id="diabetes-rf", description="x" * 1025)
    code, details = code_of(lambda: models(channel).UpdateModel(too_long))
    assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "description")

    linear = train_named(channel, "diabetes-linear", estimator="linear")
    assert dict(get_model(channel, linear.model_id).feature_importances) == {}
    assert get_model(channel, "diabetes-linear").version == 1, "versions count per name"


def test_deleting_an_aliased_version_needs_force_and_versions_are_never_reused(
    channel: grpc.Channel, tmp_path: Path
) -> None:
    one = train_named(channel, "rf", params=SMALL)
    two = train_named(channel, "rf", params=SMALL)
    set_alias(channel, "rf", "production", 1)

    refused = models_pb2.DeleteModelRequest(model_id="rf/1")
    code, details = code_of(lambda: models(channel).DeleteModel(refused))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "rf@production" in details and "force" in details
    assert predict(channel, "rf@production").model_id == one.model_id

    forced = models(channel).DeleteModel(models_pb2.DeleteModelRequest(model_id="rf/1", force=True))
    assert (forced.model_id, list(forced.removed_aliases)) == (one.model_id, ["production"])
    for gone in ("rf/1", "rf@production", one.model_id):
        assert code_of(get_model, channel, gone)[0] == grpc.StatusCode.NOT_FOUND
    assert get_model(channel, "rf").id == two.model_id
    three = train_named(channel, "rf", params=SMALL)
    assert three.model_version == 3

    models(channel).DeleteModel(models_pb2.DeleteModelRequest(model_id=two.model_id))
    listed = models(channel).ListModels(models_pb2.ListModelsRequest(name="rf")).models
    assert [m.version for m in listed] == [3]
    # Nothing of a deleted model is left in storage, not even its folder.
    stored = tmp_path / "data" / "storage" / "models"
    assert [p.name for p in stored.iterdir()] == [three.model_id]


def test_names_and_aliases_survive_a_restart(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path / "data")
    gateway = running_gateway(settings)
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            one = train_named(channel, "rf", params=SMALL)
            train_named(channel, "rf", params=SMALL)
            set_alias(channel, "rf", "production", 1)
    finally:
        gateway.stop()
    again = running_gateway(settings)
    try:
        with grpc.insecure_channel(again.address) as channel:
            assert predict(channel, "rf@production").model_id == one.model_id
            assert list(get_model(channel, one.model_id).aliases) == ["production"]
            assert train_named(channel, "rf", params=SMALL).model_version == 3
    finally:
        again.stop()


def test_an_exported_model_loads_safely_and_predicts_as_the_service_does(
    channel: grpc.Channel,
) -> None:
    trained = train_named(channel, "diabetes-rf")
    record, fmt, artifact = export(channel, "diabetes-rf")
    assert (record.id, fmt) == (trained.model_id, "mlgate-arrays-v1")
    features = [f.name for f in record.features]
    estimator = decode(Encoded(fmt, artifact), record.id, features, DEFAULT_MAX_MODEL_BYTES)
    frame = pd.DataFrame([README_ROW])[[f.name for f in record.features]]
    served = predict(channel, "diabetes-rf").predictions[0].number_value
    assert abs(float(estimator.predict(frame)[0]) - served) < 1e-6


def test_only_uploaded_datasets_can_be_deleted(channel: grpc.Channel) -> None:
    builtin = datasets_pb2.DeleteDatasetRequest(dataset_id="diabetes")
    code, details = code_of(lambda: datasets(channel).DeleteDataset(builtin))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "built in" in details
    missing = datasets_pb2.DeleteDatasetRequest(dataset_id="nothing")
    assert code_of(lambda: datasets(channel).DeleteDataset(missing))[0] == (
        grpc.StatusCode.NOT_FOUND
    )


def test_an_artifact_that_fails_its_digest_is_not_exported(
    embedded: RunningGateway, tmp_path: Path
) -> None:
    with grpc.insecure_channel(embedded.address) as channel:
        trained = train_named(channel, "rf", params=SMALL)
        record = get_model(channel, "rf")
        stored = (
            tmp_path / "data" / "storage" / "models" / trained.model_id / f"{record.sha256}.model"
        )
        blob = bytearray(stored.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        stored.write_bytes(bytes(blob))
        code, details = code_of(export, channel, "rf")
        assert code == grpc.StatusCode.DATA_LOSS and "integrity" in details
