"""The whole train → predict path with datasets and models in S3 (a private SeaweedFS)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mlgate.v1 import datasets_pb2, jobs_pb2, models_pb2
from tests.support.cluster import Cluster
from tests.support.gateway_calls import (
    README_ROW,
    assert_well_formed,
    datasets,
    diabetes_request,
    events_of,
    first_event,
    jobs,
    models,
    rows,
    train,
)
from tests.support.registry_steps import walk_the_registry
from tests.support.s3 import S3Server
from tests.support.system import gateway_settings, running_gateway

CSV = "\n".join(
    ["age,bmi,bp,s1,s2,s3,s4,s5,s6,target"]
    + [
        ",".join(f"{((i * 7 + j * 3) % 17 - 8) / 100:.4f}" for j in range(9)) + f",{100 + i}"
        for i in range(80)
    ]
).encode()


def _keys(server: S3Server, prefix: str) -> list[str]:
    listed = server.shared_client.list_objects_v2(Bucket=server.bucket, Prefix=prefix + "/")
    return sorted(item["Key"][len(prefix) + 1 :] for item in listed.get("Contents", []))


def _walkthrough(address: str, server: S3Server, prefix: str) -> str:
    """Upload, train, predict; checks the keys stored and returns the model's id."""
    with grpc.insecure_channel(address) as channel:
        upload = datasets_pb2.UploadDatasetRequest(dataset_id="patients", chunk=CSV)
        datasets(channel).UploadDataset(iter([upload]))
        events = train(channel, jobs_pb2.TrainRequest(dataset_id="patients", target="target"))
        assert_well_formed(events)
        assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED, events[-1]
        model_id = events[-1].train_result.model_id
        predicted = events_of(
            jobs(channel).Predict(jobs_pb2.PredictRequest(model_id=model_id, rows=rows(README_ROW)))
        )
        assert predicted[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED, predicted[-1]
        sha = models(channel).GetModel(models_pb2.GetModelRequest(model_id=model_id)).model.sha256
    assert _keys(server, prefix) == [
        "datasets/patients.csv",
        "datasets/patients.json",
        f"models/{model_id}/{sha}.model",
        f"models/{model_id}/manifest.json",
    ]
    return model_id


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh prefix in the test bucket, with the S3 credentials in the environment."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    yield f"mlgate-{uuid.uuid4().hex[:10]}"


def test_embedded_system_on_s3(s3_server: S3Server, s3_env: str, tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path / "data", storage_url=f"s3://{s3_server.bucket}/{s3_env}")
    gateway = running_gateway(settings)
    try:
        model_id = _walkthrough(gateway.address, s3_server, s3_env)
        with grpc.insecure_channel(gateway.address) as channel:
            models(channel).DeleteModel(models_pb2.DeleteModelRequest(model_id=model_id))
        # Nothing of the deleted model is left in the bucket.
        assert _keys(s3_server, s3_env) == ["datasets/patients.csv", "datasets/patients.json"]
    finally:
        gateway.stop()


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["rabbitmq", "redis"])
def test_gateway_and_workers_on_s3(
    broker: str, s3_server: S3Server, s3_env: str, tmp_path: Path
) -> None:
    cluster = Cluster(tmp_path, broker, {"MLGATE_STORAGE_URL": f"s3://{s3_server.bucket}/{s3_env}"})
    try:
        address = cluster.start_gateway()
        cluster.start_workers(2)
        _walkthrough(address, s3_server, s3_env)
    finally:
        cluster.stop()


def test_a_tampered_artifact_fails_the_prediction_and_the_worker_lives_on(
    s3_server: S3Server, s3_env: str, tmp_path: Path
) -> None:
    settings = gateway_settings(tmp_path / "data", storage_url=f"s3://{s3_server.bucket}/{s3_env}")
    gateway = running_gateway(settings)
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            model_id = train(channel, diabetes_request())[-1].train_result.model_id
            record = models(channel).GetModel(models_pb2.GetModelRequest(model_id=model_id)).model
            key = f"{s3_env}/models/{model_id}/{record.sha256}.model"
            client = s3_server.shared_client
            blob = bytearray(client.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read())
            blob[len(blob) // 2] ^= 0xFF
            client.put_object(Bucket=s3_server.bucket, Key=key, Body=bytes(blob))

            request = jobs_pb2.PredictRequest(model_id=model_id, rows=rows(README_ROW))
            failed = events_of(jobs(channel).Predict(request))[-1]
            assert failed.state == jobs_pb2.JOB_STATE_FAILED
            assert failed.error.code == "DATA_LOSS"
            assert "integrity" in failed.error.message
            # Nothing was loaded: the next request fails the same way rather than using a copy.
            assert events_of(jobs(channel).Predict(request))[-1].error.code == "DATA_LOSS"
            # The worker is alive and serves other models.
            other = train(channel, diabetes_request())[-1].train_result.model_id
            ok = events_of(
                jobs(channel).Predict(
                    jobs_pb2.PredictRequest(model_id=other, rows=rows(README_ROW))
                )
            )
            assert ok[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
    finally:
        gateway.stop()


@pytest.mark.slow
def test_a_training_job_redelivered_while_saving_leaves_exactly_one_model(
    s3_server: S3Server, s3_env: str, tmp_path: Path
) -> None:
    cluster = Cluster(
        tmp_path, "rabbitmq", {"MLGATE_STORAGE_URL": f"s3://{s3_server.bucket}/{s3_env}"}
    )
    try:
        address = cluster.start_gateway()
        cluster.start_workers(2)
        with grpc.insecure_channel(address) as channel:
            request = diabetes_request(params={"n_estimators": 500, "max_depth": 12})
            stream = jobs(channel).Train(request, timeout=300)
            queued = first_event(stream)
            events = [queued]
            while events[-1].stage != jobs_pb2.STAGE_SAVING:
                events.append(first_event(stream))
            # Killed while uploading its model, before acknowledging the job.
            victim = cluster.worker_running(queued.job_id, attempt=1)
            assert victim is not None
            cluster.kill(victim)
            events += events_of(stream)
            assert_well_formed(events)
            assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
            listed = models(channel).ListModels(models_pb2.ListModelsRequest()).models
            assert [m.job_id for m in listed] == [queued.job_id]
            (model,) = listed
        assert _keys(s3_server, s3_env) == [
            f"models/{model.id}/{model.sha256}.model",
            f"models/{model.id}/manifest.json",
        ]
    finally:
        cluster.stop()


def test_the_registry_on_s3(s3_server: S3Server, s3_env: str, tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path / "data", storage_url=f"s3://{s3_server.bucket}/{s3_env}")
    gateway = running_gateway(settings)

    def stored(model_id: str, sha: str) -> bytes:
        key = f"{s3_env}/models/{model_id}/{sha}.model"
        body: bytes = s3_server.shared_client.get_object(Bucket=s3_server.bucket, Key=key)[
            "Body"
        ].read()
        return body

    try:
        with grpc.insecure_channel(gateway.address) as channel:
            walk_the_registry(channel, stored)
    finally:
        gateway.stop()
