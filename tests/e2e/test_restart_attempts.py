"""An embedded restart requeues unfinished jobs from the job store and goes on counting their
attempts, so a job that kills its process every time still meets MLGATE_MAX_ATTEMPTS."""

from __future__ import annotations

from pathlib import Path

import grpc

from mlgate.v1 import jobs_pb2
from server.jobstore.sqlite import SQLiteJobStore
from tests.support.gateway_calls import diabetes_request, first_event, hang_up, jobs
from tests.support.system import gateway_settings, running_gateway
from tests.support.system_settings import SystemSettings


def _accepted_then_gone(settings: SystemSettings) -> str:
    """A job accepted by a gateway whose process then went away before any worker ran it."""
    first = running_gateway(settings, embedded_workers=False)
    try:
        with grpc.insecure_channel(first.address) as ch:
            stream = jobs(ch).Train(diabetes_request())
            queued = first_event(stream)
            hang_up(stream)
    finally:
        first.stop()
    return queued.job_id


def _died_running(settings: SystemSettings, job_id: str, attempt: int) -> None:
    """Record what a worker that died mid-job leaves behind: a RUNNING event of its attempt."""
    store = SQLiteJobStore(settings.data_dir / "jobs.db")
    try:
        running = jobs_pb2.JobEvent(
            job_id=job_id,
            seq=2,
            state=jobs_pb2.JOB_STATE_RUNNING,
            stage=jobs_pb2.STAGE_LOADING_DATA,
            attempt=attempt,
        )
        running.time.GetCurrentTime()
        assert store.record(running) is not None
    finally:
        store.close()


def _watch(settings: SystemSettings, job_id: str) -> list[jobs_pb2.JobEvent]:
    again = running_gateway(settings)
    try:
        with grpc.insecure_channel(again.address) as ch:
            request = jobs_pb2.WatchJobRequest(job_id=job_id)
            return [r.event for r in jobs(ch).WatchJob(request, timeout=120)]
    finally:
        again.stop()


def test_a_job_whose_worker_died_is_redelivered_as_its_next_attempt(tmp_path: Path) -> None:
    settings = gateway_settings(tmp_path / "data")
    job_id = _accepted_then_gone(settings)
    _died_running(settings, job_id, attempt=1)
    events = _watch(settings, job_id)
    assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
    assert events[-1].attempt == 2


def test_a_job_that_died_max_attempts_times_is_dead_lettered_after_the_restart(
    tmp_path: Path,
) -> None:
    settings = gateway_settings(tmp_path / "data", max_attempts=3)
    job_id = _accepted_then_gone(settings)
    _died_running(settings, job_id, attempt=3)
    events = _watch(settings, job_id)
    failed = events[-1]
    assert failed.state == jobs_pb2.JOB_STATE_FAILED
    assert failed.error.code == "ABORTED"
    assert "dead-lettered after 3 attempts" in failed.error.message
    assert failed.attempt == 4
