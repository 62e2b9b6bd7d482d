"""mlgate as operators run it: separate gateway and worker processes over RabbitMQ or Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mlgate.v1 import jobs_pb2, models_pb2
from tests.support.cluster import Cluster, delete_cluster_namespace
from tests.support.gateway_calls import (
    README_ROW,
    assert_well_formed,
    diabetes_request,
    events_of,
    first_event,
    hang_up,
    jobs,
    models,
    rows,
    train,
)

BROKERS = ["rabbitmq", "redis"]
# Slow enough to be caught mid-fit on a 2-core machine, fast enough to finish a test.
SLOW_FIT = {"n_estimators": 500, "max_depth": 12}
# Redis reclaims a dead worker's jobs once its heartbeat has expired: keep that short here.
FAST_RECLAIM = {"MLGATE_REDIS_HEARTBEAT_TTL": "3", "MLGATE_REDIS_RECLAIM_INTERVAL": "1"}


@pytest.fixture(params=BROKERS)
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    if request.param == "redis":
        from tests.support.redis import require_redis

        require_redis()
    else:
        from tests.support.rabbitmq import require_rabbitmq

        require_rabbitmq()
    running = Cluster(tmp_path, request.param, {"MLGATE_MAX_ATTEMPTS": "2", **FAST_RECLAIM})
    yield running
    running.stop()
    delete_cluster_namespace(request.param, running.namespace)


@pytest.mark.slow
def test_gateway_and_two_workers_train_and_predict(cluster: Cluster) -> None:
    address = cluster.start_gateway()
    one, two = cluster.start_workers(2)
    with grpc.insecure_channel(address) as channel:
        stub = jobs(channel)
        first = stub.Train(diabetes_request(params=SLOW_FIT))
        second = stub.Train(diabetes_request(params=SLOW_FIT))
        done = [events_of(first), events_of(second)]
        for events in done:
            assert_well_formed(events)
            assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
        # Prefetch 1 for training: the second job went to the idle worker, not behind the first.
        ran = {p.pid for p in (one, two) if "running train job" in cluster.log(p)}
        assert ran == {one.pid, two.pid}

        model_id = done[0][-1].train_result.model_id
        predicted = events_of(
            stub.Predict(jobs_pb2.PredictRequest(model_id=model_id, rows=rows(README_ROW)))
        )
        assert predicted[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
        assert len(predicted[-1].predict_result.predictions) == 1


@pytest.mark.slow
def test_a_worker_killed_mid_training_loses_nothing(cluster: Cluster) -> None:
    address = cluster.start_gateway()
    cluster.start_workers(2)
    with grpc.insecure_channel(address) as channel:
        stream = jobs(channel).Train(diabetes_request(params=SLOW_FIT), timeout=300)
        queued = first_event(stream)
        victim = cluster.wait_running(queued.job_id, attempt=1)
        cluster.kill(victim)
        killed_at = time.monotonic()
        events = [queued, *events_of(stream)]
        print(
            f"\n{cluster.env['MLGATE_BROKER']}: job finished {time.monotonic() - killed_at:.1f}s after SIGKILL"
        )
        assert_well_formed(events)
        assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
        assert events[-1].attempt == 2
        survivor = cluster.worker_running(queued.job_id, attempt=2)
        assert survivor is not None and survivor.pid != victim.pid
        listed = models(channel).ListModels(models_pb2.ListModelsRequest()).models
        assert [m.job_id for m in listed] == [queued.job_id]
        assert _stored(cluster) == _files_of(listed[0])


def _stored(cluster: Cluster) -> list[str]:
    """Every file of the cluster's object store, temporary ones included."""
    root = cluster.tmp / "data" / "storage"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _files_of(model: models_pb2.Model) -> list[str]:
    return [f"models/{model.id}/{model.sha256}.model", f"models/{model.id}/manifest.json"]


@pytest.mark.slow
def test_a_job_that_kills_every_worker_is_dead_lettered(cluster: Cluster) -> None:
    address = cluster.start_gateway()
    cluster.start_worker()
    with grpc.insecure_channel(address) as channel:
        stream = jobs(channel).Train(diabetes_request(params=SLOW_FIT), timeout=300)
        queued = first_event(stream)
        for attempt in (1, 2):  # MLGATE_MAX_ATTEMPTS=2
            victim = cluster.wait_running(queued.job_id, attempt)
            cluster.kill(victim)
            cluster.start_worker()
        events = [queued, *events_of(stream)]
        assert_well_formed(events)
        failed = events[-1]
        assert failed.state == jobs_pb2.JOB_STATE_FAILED
        assert "dead-lettered after 2 attempts" in failed.error.message
        # The worker that dead-lettered it is alive and takes the next job.
        assert train(channel, diabetes_request())[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
        listed = models(channel).ListModels(models_pb2.ListModelsRequest()).models
        assert [m.job_id for m in listed] != [queued.job_id]
        # Nothing of the dead-lettered job is left in storage: only the next job's model.
        assert _stored(cluster) == _files_of(listed[0])


@pytest.mark.slow
def test_two_gateways_share_a_redis_job_store(tmp_path: Path) -> None:
    from tests.support.redis import SHARED_URL, delete_namespace, require_redis

    require_redis()
    cluster = Cluster(tmp_path, "redis", FAST_RECLAIM)
    store = f"{cluster.namespace}-jobs"
    cluster.env["MLGATE_STORE_URL"] = f"{SHARED_URL}?namespace={store}"
    try:
        one = cluster.start_gateway()
        two = cluster.start_gateway()
        cluster.start_worker()
        with grpc.insecure_channel(one) as first, grpc.insecure_channel(two) as second:
            stream = jobs(first).Train(diabetes_request(params=SLOW_FIT))
            queued = first_event(stream)
            hang_up(stream)  # the client moves to the other gateway
            watched = [
                r.event
                for r in jobs(second).WatchJob(jobs_pb2.WatchJobRequest(job_id=queued.job_id))
            ]
            assert_well_formed(watched)
            assert watched[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
            assert jobs(first).GetJob(jobs_pb2.GetJobRequest(job_id=queued.job_id)).job == (
                jobs(second).GetJob(jobs_pb2.GetJobRequest(job_id=queued.job_id)).job
            )
    finally:
        cluster.stop()
        delete_namespace(SHARED_URL, cluster.namespace)
        delete_namespace(SHARED_URL, store)


@pytest.mark.slow
def test_two_gateways_on_one_redis_job_store_share_names_and_aliases(tmp_path: Path) -> None:
    from tests.support.redis import SHARED_URL, delete_namespace, require_redis

    require_redis()
    cluster = Cluster(tmp_path, "redis", FAST_RECLAIM)
    store = f"{cluster.namespace}-jobs"
    cluster.env["MLGATE_STORE_URL"] = f"{SHARED_URL}?namespace={store}"
    try:
        addresses = [cluster.start_gateway(), cluster.start_gateway()]
        cluster.start_workers(2)
        channels = [grpc.insecure_channel(address) for address in addresses]
        try:
            # Both gateways record trainings of one name at once: versions 1..6, no gap.
            streams = [
                jobs(channels[i % 2]).Train(
                    diabetes_request(model_name="shared", params={"n_estimators": 10}),
                    timeout=180,
                )
                for i in range(6)
            ]
            results = [events_of(stream)[-1] for stream in streams]
            assert all(r.state == jobs_pb2.JOB_STATE_SUCCEEDED for r in results), results
            by_version = {r.train_result.model_version: r.train_result.model_id for r in results}
            assert sorted(by_version) == [1, 2, 3, 4, 5, 6]

            # An alias moved through one gateway is what the other resolves next.
            for version in (2, 5):
                models(channels[0]).SetModelAlias(
                    models_pb2.SetModelAliasRequest(name="shared", alias="live", version=version)
                )
                request = jobs_pb2.PredictRequest(model_id="shared@live", rows=rows(README_ROW))
                done = events_of(jobs(channels[1]).Predict(request, timeout=60))[-1]
                assert done.predict_result.model_id == by_version[version]
        finally:
            for channel in channels:
                channel.close()
    finally:
        cluster.stop()
        delete_namespace(SHARED_URL, cluster.namespace)
        delete_namespace(SHARED_URL, store)
