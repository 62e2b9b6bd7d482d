"""Outages of what a gateway depends on, each really stopped: the broker (health follows it,
submissions are refused, nothing is lost), the job store and the object store. Every RPC answers
UNAVAILABLE naming the service, never its address."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from mlgate.v1 import datasets_pb2, jobs_pb2, models_pb2
from tests.support.broker_outages import Outage, wait_status
from tests.support.broker_outages import outage as outage  # the fixture, shared
from tests.support.fresh import unique_namespace
from tests.support.gateway_calls import (
    README_ROW,
    assert_well_formed,
    datasets,
    diabetes_request,
    events_of,
    first_event,
    hang_up,
    jobs,
    models,
    refused,
    rows,
    train,
    trained_model,
)
from tests.support.redis import PrivateRedis
from tests.support.s3 import start_seaweedfs
from tests.support.system import gateway_settings, running_gateway

# A fit of several seconds: it is still running once the broker has stopped (which takes RabbitMQ
# seconds), and ends while the broker is away.
SLOW_FIT = {"n_estimators": 3000, "max_depth": 10}
PAIRS = "\n".join(["x,y", *(f"{i},{2 * i + 1}" for i in range(40))]).encode()


@pytest.mark.slow
def test_broker_outage_is_visible_refused_and_survived(outage: Outage, tmp_path: Path) -> None:
    settings = gateway_settings(
        tmp_path / "data",
        broker=outage.broker,
        broker_url=outage.url,
        namespace=unique_namespace("outage"),
        publish_timeout=2.0,
        redis_heartbeat_ttl=3.0,
        redis_reclaim_interval=1.0,
    )
    gateway = running_gateway(settings)
    try:
        address = gateway.address
        wait_status(address, health_pb2.HealthCheckResponse.SERVING)
        with grpc.insecure_channel(address) as channel:
            stream = jobs(channel).Train(
                diabetes_request(params={"n_estimators": 400, "max_depth": 10})
            )
            accepted = first_event(stream)
            hang_up(stream)

            outage.stop()
            wait_status(address, health_pb2.HealthCheckResponse.NOT_SERVING)
            assert refused(lambda: list(jobs(channel).Train(diabetes_request(), timeout=30))) == (
                grpc.StatusCode.UNAVAILABLE,
                f"the job broker ({outage.broker}) is unreachable; try again shortly",
            )
            not_queued = (
                jobs(channel)
                .ListJobs(jobs_pb2.ListJobsRequest(state=jobs_pb2.JOB_STATE_FAILED))
                .jobs
            )
            assert [j.last_event.error.code for j in not_queued] == ["UNAVAILABLE"]

            outage.start()
            wait_status(address, health_pb2.HealthCheckResponse.SERVING)
            watched = [
                r.event
                for r in jobs(channel).WatchJob(
                    jobs_pb2.WatchJobRequest(job_id=accepted.job_id), timeout=180
                )
            ]
            assert_well_formed(watched)
            assert watched[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
            after = jobs(channel).Train(diabetes_request(), timeout=120)
            assert [r.event for r in after][-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
    finally:
        gateway.stop()


def _each_refused(calls: dict[str, Callable[[], object]], expected: str) -> None:
    answers = {name: refused(call) for name, call in calls.items()}
    assert answers == dict.fromkeys(calls, (grpc.StatusCode.UNAVAILABLE, expected))


@pytest.mark.slow
def test_a_stopped_job_store_is_unavailable_to_every_rpc_that_reads_it(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path / "redis").start()
    store_url = f"{server.url}?namespace={unique_namespace('outage')}"
    gateway = running_gateway(gateway_settings(tmp_path / "data", store_url=store_url))
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            done = train(channel, diabetes_request(model_name="sugar"))
            assert done[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED, done[-1]
            job_id, model_id = done[-1].job_id, done[-1].train_result.model_id

            server.stop()
            predict = jobs_pb2.PredictRequest(model_id=model_id, rows=rows(README_ROW))
            _each_refused(
                {
                    "Train": lambda: train(channel, diabetes_request()),
                    "Predict": lambda: events_of(jobs(channel).Predict(predict, timeout=30)),
                    "GetJob": lambda: jobs(channel).GetJob(jobs_pb2.GetJobRequest(job_id=job_id)),
                    "ListJobs": lambda: jobs(channel).ListJobs(jobs_pb2.ListJobsRequest()),
                    "CancelJob": lambda: jobs(channel).CancelJob(
                        jobs_pb2.CancelJobRequest(job_id=job_id)
                    ),
                    "WatchJob": lambda: events_of(
                        jobs(channel).WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), timeout=30)
                    ),
                    # The model registry (names, versions, aliases) lives in the job store too.
                    "GetModel": lambda: models(channel).GetModel(
                        models_pb2.GetModelRequest(model_id="sugar@latest")
                    ),
                    "SetModelAlias": lambda: models(channel).SetModelAlias(
                        models_pb2.SetModelAliasRequest(name="sugar", alias="prod", version=1)
                    ),
                },
                "the job store (redis) is unreachable; try again shortly",
            )

            server.start()
            again = jobs(channel).GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=30)
            assert again.job.state == jobs_pb2.JOB_STATE_SUCCEEDED
    finally:
        gateway.stop()
        server.stop()


@pytest.mark.slow
def test_a_stopped_object_store_is_unavailable_to_every_rpc_that_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "s3").mkdir()
    s3, stop_s3 = start_seaweedfs(tmp_path / "s3")
    try:
        for name, value in s3.env().items():
            monkeypatch.setenv(name, value)
        settings = gateway_settings(tmp_path / "data", storage_url=f"s3://{s3.bucket}/outage")
        gateway = running_gateway(settings)
        try:
            with grpc.insecure_channel(gateway.address) as channel:
                upload = datasets_pb2.UploadDatasetRequest(dataset_id="pairs", chunk=PAIRS)
                datasets(channel).UploadDataset(iter([upload]))
                model_id = trained_model(
                    channel, jobs_pb2.TrainRequest(dataset_id="pairs", target="y")
                )

                stop_s3()
                predict = jobs_pb2.PredictRequest(model_id=model_id, rows=rows({"x": 1.0}))
                by_id = models_pb2.GetModelRequest(model_id=model_id)
                _each_refused(
                    {
                        "Train": lambda: train(
                            channel, jobs_pb2.TrainRequest(dataset_id="pairs", target="y")
                        ),
                        "Predict": lambda: events_of(jobs(channel).Predict(predict, timeout=60)),
                        "GetModel": lambda: models(channel).GetModel(by_id),
                        "ListModels": lambda: models(channel).ListModels(
                            models_pb2.ListModelsRequest()
                        ),
                        "DeleteModel": lambda: models(channel).DeleteModel(
                            models_pb2.DeleteModelRequest(model_id=model_id)
                        ),
                        "ExportModel": lambda: list(
                            models(channel).ExportModel(
                                models_pb2.ExportModelRequest(model_id=model_id)
                            )
                        ),
                        "UploadDataset": lambda: datasets(channel).UploadDataset(iter([upload])),
                        "GetDataset": lambda: datasets(channel).GetDataset(
                            datasets_pb2.GetDatasetRequest(dataset_id="pairs")
                        ),
                        "ListDatasets": lambda: datasets(channel).ListDatasets(
                            datasets_pb2.ListDatasetsRequest()
                        ),
                        "DeleteDataset": lambda: datasets(channel).DeleteDataset(
                            datasets_pb2.DeleteDatasetRequest(dataset_id="pairs")
                        ),
                    },
                    "the object store (s3) is unreachable; try again shortly",
                )
        finally:
            gateway.stop()
    finally:
        stop_s3()


@pytest.mark.slow
def test_a_broker_outage_while_a_job_runs_costs_no_attempt(
    outage: Outage, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The job finishes its fit while the broker is away; its outcome waits for the broker, then
    is recorded, and the redelivery RabbitMQ makes of the job (its channel died) is acknowledged
    without running. With MLGATE_MAX_ATTEMPTS=1 any redelivery counted as an attempt would have
    dead-lettered it."""
    caplog.set_level(logging.WARNING, logger="workers.outages")
    settings = gateway_settings(
        tmp_path / "data",
        broker=outage.broker,
        broker_url=outage.url,
        namespace=unique_namespace("outage"),
        publish_timeout=2.0,
        redis_heartbeat_ttl=3.0,
        redis_reclaim_interval=1.0,
        max_attempts=1,
    )
    gateway = running_gateway(settings)
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            stream = jobs(channel).Train(diabetes_request(params=SLOW_FIT))
            accepted = first_event(stream)
            while first_event(stream).state != jobs_pb2.JOB_STATE_RUNNING:
                pass
            hang_up(stream)
            outage.stop()
            # The fit ends while the broker is away: its outcome waits (and says so) until then.
            deadline = time.monotonic() + 120
            while not [r for r in caplog.records if r.name == "workers.outages"]:
                assert time.monotonic() < deadline, "the job's outcome never waited for the broker"
                time.sleep(0.1)  # the worker's log is the signal
            outage.start()
            wait_status(gateway.address, health_pb2.HealthCheckResponse.SERVING)
            watched = [
                r.event
                for r in jobs(channel).WatchJob(
                    jobs_pb2.WatchJobRequest(job_id=accepted.job_id), timeout=120
                )
            ]
            assert watched[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED, watched[-1]
            record = jobs(channel).GetJob(jobs_pb2.GetJobRequest(job_id=accepted.job_id)).job
            assert record.attempt == 1
            listed = models(channel).ListModels(models_pb2.ListModelsRequest()).models
            assert [m.job_id for m in listed] == [accepted.job_id]
    finally:
        gateway.stop()
    waited = [r.getMessage() for r in caplog.records if r.name == "workers.outages"]
    assert len(waited) == 2, waited
    assert waited[0].startswith(f"the job broker ({outage.broker}) is unreachable"), waited
    assert waited[1].startswith(f"the job broker ({outage.broker}) is back after"), waited
