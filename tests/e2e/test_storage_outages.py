"""An object store that goes away while training jobs run: the local directory renamed away, or
a private SeaweedFS stopped. A short outage costs time, never a job nor an attempt; one longer than
``MLGATE_OUTAGE_RETRY_SECONDS`` ends the jobs that waited for it FAILED, UNAVAILABLE, naming the
store as the gateway names it. Each worker says so once per outage, not once per retry."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from mlgate.v1 import jobs_pb2, models_pb2
from tests.support.cluster import Cluster
from tests.support.gateway_calls import (
    assert_well_formed,
    diabetes_request,
    events_of,
    first_event,
    jobs,
)
from tests.support.gateway_calls import models as model_service
from tests.support.s3 import SeaweedFS, private_seaweedfs
from tests.support.system import gateway_settings, running_gateway

JOBS = 20
OUTAGE = 10.0  # seconds the store is away in the short outage
SHORT_BOUND = 3.0  # MLGATE_OUTAGE_RETRY_SECONDS for the long one
DOWN = "is unreachable"
BACK = "is back after"


def _submit(channel: grpc.Channel, count: int) -> list[tuple[jobs_pb2.JobEvent, Any]]:
    """``count`` training jobs accepted (QUEUED), with their open event streams."""
    streams = [jobs(channel).Train(diabetes_request(), timeout=300) for _ in range(count)]
    return [(first_event(stream), stream) for stream in streams]


def _finish(submitted: list[tuple[jobs_pb2.JobEvent, Any]]) -> list[jobs_pb2.JobEvent]:
    """Each job's last event, after checking its whole stream is well formed."""
    last = []
    for queued, stream in submitted:
        events = [queued, *events_of(stream)]
        assert_well_formed(events)
        last.append(events[-1])
    return last


def _mid_run_outage(
    channel: grpc.Channel, stop: Callable[[], object], start: Callable[[], object]
) -> list[jobs_pb2.JobEvent]:
    """JOBS jobs submitted; the store stopped once the first has succeeded, for OUTAGE seconds."""
    submitted = _submit(channel, JOBS)
    first = _finish(submitted[:1])
    assert first[0].state == jobs_pb2.JOB_STATE_SUCCEEDED, first[0]
    stop()
    time.sleep(OUTAGE)  # the outage's length is what is tested: nothing to wait for instead
    start()
    back = time.monotonic()
    rest = _finish(submitted[1:])
    print(f"\n{len(rest)} jobs ended {time.monotonic() - back:.1f} s after the store was back")
    return first + rest


def _assert_all_succeeded_first_time(done: list[jobs_pb2.JobEvent]) -> None:
    assert [e.state for e in done] == [jobs_pb2.JOB_STATE_SUCCEEDED] * len(done), [
        (e.state, e.error.message) for e in done if e.state != jobs_pb2.JOB_STATE_SUCCEEDED
    ]
    # Not one redelivery: the outage did not count as an attempt, let alone dead-letter a job.
    assert [e.attempt for e in done] == [1] * len(done)


def _assert_failed_unavailable(done: list[jobs_pb2.JobEvent], store: str) -> None:
    for event in done:
        assert event.state == jobs_pb2.JOB_STATE_FAILED, event
        # Told as the gateway tells the same outage: one mapping (mlgate.failures) for both.
        assert (event.error.code, event.error.message) == (
            "UNAVAILABLE",
            f"the object store ({store}) is unreachable; try again shortly",
        ), event.error
        assert event.attempt == 1


# --- the local directory, embedded workers on the memory broker -------------------------------


@pytest.fixture
def outage_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="workers.outages")
    return caplog


def _messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def _renamed_away(storage: Path) -> tuple[Callable[[], object], Callable[[], object]]:
    away = storage.with_name("storage-away")
    return lambda: storage.rename(away), lambda: away.rename(storage)


@pytest.mark.slow
def test_a_local_store_away_for_10s_loses_and_fails_nothing(
    tmp_path: Path, outage_log: pytest.LogCaptureFixture
) -> None:
    gateway = running_gateway(gateway_settings(tmp_path / "data"))
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            stop, start = _renamed_away(tmp_path / "data" / "storage")
            done = _mid_run_outage(channel, stop, start)
            _assert_all_succeeded_first_time(done)
            listed = model_service(channel).ListModels(models_pb2.ListModelsRequest()).models
            assert sorted(m.job_id for m in listed) == sorted(e.job_id for e in done)
    finally:
        gateway.stop()
    (down,) = _messages(outage_log, DOWN)
    assert down.startswith("the object store (local directory) is unreachable")
    assert len(_messages(outage_log, BACK)) == 1


def test_a_local_store_away_longer_than_the_bound_fails_jobs_unavailable(
    tmp_path: Path, outage_log: pytest.LogCaptureFixture
) -> None:
    settings = gateway_settings(tmp_path / "data", outage_retry_seconds=SHORT_BOUND)
    gateway = running_gateway(settings)
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            stop, start = _renamed_away(tmp_path / "data" / "storage")
            stop()
            _assert_failed_unavailable(_finish(_submit(channel, 2)), "local directory")
            start()
            # The worker lives on and trains once the store is back.
            _assert_all_succeeded_first_time(_finish(_submit(channel, 1)))
    finally:
        gateway.stop()
    assert len(_messages(outage_log, DOWN)) == 1


# --- S3 on a private SeaweedFS, a gateway and two workers on a real broker ------------------


@pytest.fixture
def seaweedfs(tmp_path: Path) -> Iterator[SeaweedFS]:
    """A SeaweedFS of this test's own, since the test stops it."""
    with private_seaweedfs(tmp_path / "s3") as weed:
        yield weed


def _s3_cluster(tmp_path: Path, broker: str, weed: SeaweedFS, **env: str) -> Cluster:
    if broker == "redis":
        from tests.support.redis import require_redis

        require_redis()
    else:
        from tests.support.rabbitmq import require_rabbitmq

        require_rabbitmq()
    return Cluster(
        tmp_path,
        broker,
        {**weed.server.env(), "MLGATE_STORAGE_URL": f"s3://{weed.server.bucket}/outage", **env},
    )


def _s3_keys(weed: SeaweedFS) -> list[str]:
    client = weed.server.client()
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=weed.server.bucket, Prefix="outage/"
    ):
        keys += [item["Key"].removeprefix("outage/") for item in page.get("Contents", [])]
    return sorted(keys)


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["rabbitmq", "redis"])
def test_s3_stopped_for_10s_loses_and_fails_nothing(
    broker: str, seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    cluster = _s3_cluster(tmp_path, broker, seaweedfs)
    try:
        address = cluster.start_gateway()
        workers = cluster.start_workers(2)
        with grpc.insecure_channel(address) as channel:
            done = _mid_run_outage(channel, seaweedfs.stop, seaweedfs.start)
            _assert_all_succeeded_first_time(done)
            listed = model_service(channel).ListModels(models_pb2.ListModelsRequest()).models
        # One artifact and one manifest per job: nothing an interrupted save left behind.
        assert _s3_keys(seaweedfs) == sorted(
            key
            for m in listed
            for key in (f"models/{m.id}/{m.sha256}.model", f"models/{m.id}/manifest.json")
        )
        assert sorted(m.job_id for m in listed) == sorted(e.job_id for e in done)
        for worker in workers:
            log = cluster.log(worker)
            assert "dead-lettered" not in log
            assert log.count(DOWN) <= 1 and log.count(BACK) == log.count(DOWN), log
        assert sum("the object store (s3) is unreachable" in cluster.log(w) for w in workers) >= 1
    finally:
        cluster.stop()


@pytest.mark.slow
def test_s3_stopped_longer_than_the_bound_fails_jobs_unavailable(
    seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    cluster = _s3_cluster(
        tmp_path, "redis", seaweedfs, MLGATE_OUTAGE_RETRY_SECONDS=f"{SHORT_BOUND:g}"
    )
    try:
        address = cluster.start_gateway()
        cluster.start_workers(2)
        with grpc.insecure_channel(address) as channel:
            seaweedfs.stop()
            _assert_failed_unavailable(_finish(_submit(channel, 4)), "s3")
            seaweedfs.start()
            _assert_all_succeeded_first_time(_finish(_submit(channel, 1)))
    finally:
        cluster.stop()
