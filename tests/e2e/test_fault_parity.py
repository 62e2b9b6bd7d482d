"""One fault, one answer: a missing S3 bucket, a tampered artifact and an unreachable object store
give the same status code and message inside a job (the worker, its fit process, its inference
server) as at the gateway's edge, because every one of them tells a fault through
``mlgate.failures``.

The gateway admits jobs from a store that works; the worker that runs them is given the broken
one, and a second gateway on the broken store shows what the edge says of the same fault.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from mlgate.errors import MLGateError
from mlgate.failures import Backends, public
from mlgate.jobs import plan
from mlgate.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from mlgate.v1 import datasets_pb2, jobs_pb2, models_pb2
from storage import open_object_store
from storage.base import ObjectStore
from storage.datasets import DatasetCatalog
from storage.errors import StorageUnavailable
from storage.models import ModelRepository
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
from tests.support.oip import matrix_request, readme_matrix
from tests.support.s3 import S3Server
from tests.support.system import gateway_settings, running_gateway
from tests.support.system_settings import SystemSettings
from workers.fitpool import FitPool
from workers.messages import FitTask
from workers.worker import Worker

CSV = b"size,rooms,price\n" + b"".join(b"%d,%d,%d.5\n" % (i, i % 5, 3 * i) for i in range(40))

Told = tuple[str, str]


@dataclass
class System:
    """A gateway on a working S3 prefix, with no worker of its own: each test brings its own."""

    gateway: BackgroundGateway
    url: str
    tmp: Path

    @property
    def settings(self) -> SystemSettings:
        return self.gateway.settings

    @contextmanager
    def worker(self, storage_url: str) -> Iterator[Worker]:
        """A worker on this gateway's broker whose object store is ``storage_url``."""
        settings = self.settings.worker.with_(storage_url=storage_url, outage_retry_seconds=0.5)
        objects = open_object_store(storage_url)
        worker = Worker(
            self.gateway.gateway.broker,
            DatasetCatalog(objects),
            ModelRepository(objects),
            settings,
        )
        worker.start()
        try:
            yield worker
        finally:
            worker.stop(10)

    @contextmanager
    def edge(self, storage_url: str) -> Iterator[grpc.Channel]:
        """A channel to a second gateway, on ``storage_url``."""
        data = self.tmp / f"edge-{uuid.uuid4().hex[:8]}"
        edge = running_gateway(
            gateway_settings(data, storage_url=storage_url), embedded_workers=False
        )
        try:
            with grpc.insecure_channel(edge.address) as channel:
                yield channel
        finally:
            edge.stop()

    def setup(self, dataset_id: str) -> str:
        """Upload ``dataset_id`` and train the README's forest, with a worker on the working
        store; the model's id."""
        with self.worker(self.url), grpc.insecure_channel(self.gateway.address) as channel:
            upload = datasets_pb2.UploadDatasetRequest(dataset_id=dataset_id, chunk=CSV)
            datasets(channel).UploadDataset(iter([upload]))
            return trained_model(channel)


@pytest.fixture(scope="module")
def system(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    tmp = tmp_path_factory.mktemp("parity")
    url = f"s3://{s3_server.bucket}/parity-{uuid.uuid4().hex[:10]}"
    with pytest.MonkeyPatch.context() as env:
        for name, value in s3_server.env().items():
            env.setenv(name, value)
        settings = gateway_settings(tmp / "data", storage_url=url)
        gateway = running_gateway(settings, embedded_workers=False)
        try:
            yield System(gateway, url, tmp)
        finally:
            gateway.stop()


def _in_a_job(system: System, model_id: str) -> Told:
    """What a prediction job on ``model_id`` ended with."""
    with grpc.insecure_channel(system.gateway.address) as channel:
        request = jobs_pb2.PredictRequest(model_id=model_id, rows=rows(README_ROW))
        last = events_of(jobs(channel).Predict(request, timeout=60))[-1]
    assert last.state == jobs_pb2.JOB_STATE_FAILED, last
    return last.error.code, last.error.message


def _in_model_infer(system: System, model_id: str) -> Told:
    """What ``ModelInfer`` on ``model_id`` was refused with, from the worker's inference server."""
    with grpc.insecure_channel(system.gateway.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = matrix_request(model_id, readme_matrix(), raw=True)
        code, message = refused(lambda: stub.ModelInfer(request, timeout=60))
    return code.name, message


def _fit_task(system: System, dataset_id: str) -> FitTask:
    """A fit of ``dataset_id`` as the worker would plan it from the working store."""
    schema = DatasetCatalog(open_object_store(system.url)).describe(dataset_id)
    return FitTask(
        job_id="job_" + uuid.uuid4().hex,
        model_id="mdl_" + uuid.uuid4().hex,
        plan=plan(jobs_pb2.TrainRequest(dataset_id=dataset_id, target="price"), schema),
        dataset_sha256=schema.sha256,
        cores=1,
        memory_limit=0,
    )


def _in_a_fit_process(system: System, task: FitTask, store: ObjectStore, url: str) -> Told:
    """What a fit process running ``task`` on ``store`` (opened from ``url``) reported, as its
    worker tells it: an outage is waited out first, then told as the error it was."""
    gateway = system.settings.gateway
    backends = Backends.of(gateway.broker.kind, url, gateway.store_url)
    pool = FitPool(store, 1, backends)
    pool.start()
    try:
        pool.run(task, lambda stage, fraction: None, stop=lambda: False, timeout=60)
    except StorageUnavailable as exc:
        told = public(exc, backends, f"job {task.job_id}")
        return told.code, told.message
    except MLGateError as exc:
        return exc.code, exc.message
    finally:
        pool.close()
    raise AssertionError("the fit succeeded")


def _at_the_edge(channel: grpc.Channel, model_id: str) -> Told:
    code, message = refused(
        lambda: models(channel).GetModel(models_pb2.GetModelRequest(model_id=model_id))
    )
    return code.name, message


def test_a_missing_bucket_is_told_alike_at_the_edge_and_in_every_worker_path(
    system: System,
) -> None:
    model_id = system.setup("houses")
    missing = f"s3://missing-{uuid.uuid4().hex[:10]}/parity"
    told = (
        "FAILED_PRECONDITION",
        "the object store (s3) is not set up as configured; mlgate's logs say why; "
        "tell its operator",
    )
    with system.edge(missing) as channel:
        assert _at_the_edge(channel, model_id) == told
    with system.worker(missing):
        assert _in_a_job(system, model_id) == told
        assert _in_model_infer(system, model_id) == told
    task = _fit_task(system, "houses")
    assert _in_a_fit_process(system, task, open_object_store(missing), missing) == told


def test_an_unreachable_store_is_told_alike_at_the_edge_and_in_every_worker_path(
    system: System,
) -> None:
    model_id = system.setup("flats")
    gone = system.tmp / f"gone-{uuid.uuid4().hex[:8]}"
    url = f"file://{gone}"
    told = ("UNAVAILABLE", "the object store (local directory) is unreachable; try again shortly")
    task = _fit_task(system, "flats")
    store = open_object_store(url)
    with system.edge(url) as channel, system.worker(url):
        shutil.rmtree(gone)  # after each opened it: a store that was there and went away
        assert _at_the_edge(channel, model_id) == told
        # The job waits out the outage for MLGATE_OUTAGE_RETRY_SECONDS (0.5 s here) first.
        assert _in_a_job(system, model_id) == told
        assert _in_model_infer(system, model_id) == told
    assert _in_a_fit_process(system, task, store, url) == told


def test_a_tampered_artifact_is_told_alike_at_the_edge_and_in_every_worker_path(
    system: System, s3_server: S3Server
) -> None:
    model_id = system.setup("cottages")
    prefix = system.url.removeprefix(f"s3://{s3_server.bucket}/")
    client, bucket = s3_server.shared_client, s3_server.bucket
    with grpc.insecure_channel(system.gateway.address) as channel:
        record = models(channel).GetModel(models_pb2.GetModelRequest(model_id=model_id)).model
        key = f"{prefix}/models/{model_id}/{record.sha256}.model"
        blob = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        blob[len(blob) // 2] ^= 0xFF
        client.put_object(Bucket=bucket, Key=key, Body=bytes(blob))
        schema = f"{prefix}/datasets/cottages.json"

        code, message = refused(
            lambda: list(
                models(channel).ExportModel(models_pb2.ExportModelRequest(model_id=model_id))
            )
        )
        model_told = (code.name, message)
        assert model_told == (
            "DATA_LOSS",
            f"model {model_id} failed its integrity check: the sha256 does not match",
        )
        with system.worker(system.url):
            assert _in_a_job(system, model_id) == model_told
            assert _in_model_infer(system, model_id) == model_told

        # A fit process reads datasets, not models: a dataset's tampered schema, then.
        task = _fit_task(system, "cottages")
        client.put_object(Bucket=bucket, Key=schema, Body=b"{not json")
        code, message = refused(
            lambda: datasets(channel).GetDataset(
                datasets_pb2.GetDatasetRequest(dataset_id="cottages")
            )
        )
    schema_told = (
        "DATA_LOSS",
        "dataset 'cottages' has a corrupt schema: it is not the JSON mlgate writes",
    )
    assert (code.name, message) == schema_told
    store = open_object_store(system.url)
    assert _in_a_fit_process(system, task, store, system.url) == schema_told
