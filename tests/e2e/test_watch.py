"""WatchJob at the edges: resuming past a job's end, and many watchers of one job."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mlgate.v1 import jobs_pb2
from tests.support.background import BackgroundGateway
from tests.support.fresh import unique_namespace
from tests.support.gateway_calls import diabetes_request, events_of, first_event, jobs, train
from tests.support.system import gateway_settings, running_gateway

# Slow enough to still be fitting once a hundred watchers are attached.
SLOW_FIT = {"n_estimators": 1000, "max_depth": 12}


@pytest.fixture(params=["sqlite", "redis"])
def store_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An embedded system on each job store."""
    changes: dict[str, object] = {}
    if request.param == "redis":
        from tests.support.redis import delete_namespace, require_redis

        url, namespace = require_redis(), unique_namespace()
        changes["store_url"] = f"{url}?namespace={namespace}"
    running = running_gateway(gateway_settings(tmp_path / "data", **changes))
    yield running.address
    running.stop()
    if request.param == "redis":
        delete_namespace(url, namespace)


def _watch(stub: object, job_id: str, after_seq: int) -> list[jobs_pb2.JobEvent]:
    request = jobs_pb2.WatchJobRequest(job_id=job_id, after_seq=after_seq)
    return events_of(stub.WatchJob(request, timeout=10))  # type: ignore[attr-defined]


def test_watching_a_finished_job_from_its_end_returns_at_once(store_gateway: str) -> None:
    with grpc.insecure_channel(store_gateway) as channel:
        stub = jobs(channel)
        events = train(channel, diabetes_request())
        done = events[-1]
        assert done.state == jobs_pb2.JOB_STATE_SUCCEEDED
        # A client that saw the last event (or claims a later one) is told there is nothing more.
        assert _watch(stub, done.job_id, done.seq) == []
        assert _watch(stub, done.job_id, done.seq + 100) == []
        assert _watch(stub, done.job_id, done.seq - 1) == [done]


def test_watching_a_running_job_from_past_its_end_ends_with_the_job(store_gateway: str) -> None:
    with grpc.insecure_channel(store_gateway) as channel:
        stub = jobs(channel)
        submitted = stub.Train(diabetes_request())
        queued = first_event(submitted)
        # Past the outcome of any attempt the job may have.
        assert _watch(stub, queued.job_id, 10**12) == []
        assert events_of(submitted)[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED


def test_a_hundred_watchers_of_one_job_share_each_read_of_the_job_store(
    embedded: BackgroundGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = embedded.gateway.store
    reads = 0
    lock = threading.Lock()
    read_events = store.events

    def counted(job_id: str, after_seq: int) -> list[jobs_pb2.JobEvent]:
        nonlocal reads
        with lock:
            reads += 1
        return read_events(job_id, after_seq)

    monkeypatch.setattr(store, "events", counted)
    with grpc.insecure_channel(embedded.address) as channel:
        stub = jobs(channel)
        submitted = stub.Train(diabetes_request(params=SLOW_FIT))
        job_id = first_event(submitted).job_id
        watchers = [stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id)) for _ in range(100)]
        for watcher in watchers:
            assert first_event(watcher).state == jobs_pb2.JOB_STATE_QUEUED  # attached
        with lock:
            reads = 0
        cancelled = stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id)).job
        assert cancelled.state == jobs_pb2.JOB_STATE_CANCELLED, "the job ended before the test"
        for watcher in watchers:
            assert events_of(watcher)[-1].state == jobs_pb2.JOB_STATE_CANCELLED
        assert events_of(submitted)[-1].state == jobs_pb2.JOB_STATE_CANCELLED
    # One read per wake-up of the job, handed to every stream; not one read per stream.
    assert reads < 25, f"{reads} reads of the job store for 101 streams of one job"
