"""Fits run in child processes of their worker: a cancel stops one at once, time and memory limits
end one FAILED, and a child that dies costs only its attempt. On each broker, the worker embedded."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from mlgate.v1 import datasets_pb2, jobs_pb2, models_pb2
from tests.support.background import BackgroundGateway
from tests.support.fresh import unique_namespace
from tests.support.gateway_calls import (
    assert_well_formed,
    datasets,
    diabetes_request,
    events_of,
    jobs,
    models,
    refused,
)
from tests.support.system import gateway_settings, running_gateway

# Minutes of fitting on this machine: only a stop ends it within a test.
ENDLESS_FIT = {"n_estimators": 20000, "max_depth": None}


def _broker_settings(broker: str) -> dict[str, Any]:
    if broker == "memory":
        return {}
    if broker == "redis":
        from tests.support.redis import SHARED_URL, require_redis

        require_redis()
        return {"broker": "redis", "broker_url": SHARED_URL}
    from tests.support.rabbitmq import SHARED_URL as RABBITMQ_URL
    from tests.support.rabbitmq import require_rabbitmq

    require_rabbitmq()
    return {"broker": "rabbitmq", "broker_url": RABBITMQ_URL}


def _cleanup(broker: str, namespace: str) -> None:
    if broker == "redis":
        from tests.support.redis import SHARED_URL, delete_namespace

        delete_namespace(SHARED_URL, namespace)
    elif broker == "rabbitmq":
        from tests.support.rabbitmq import SHARED_URL as RABBITMQ_URL
        from tests.support.rabbitmq import delete_namespace as delete_rabbitmq_namespace

        delete_rabbitmq_namespace(RABBITMQ_URL, namespace)


def _system(tmp_path: Path, broker: str = "memory", **changes: object) -> BackgroundGateway:
    chosen = {"namespace": unique_namespace(), **_broker_settings(broker), **changes}
    settings = gateway_settings(tmp_path / "data", **chosen)
    return running_gateway(settings)


@pytest.fixture
def system(tmp_path: Path) -> Iterator[BackgroundGateway]:
    running = _system(tmp_path, train_memory_limit=256 * 2**20)
    yield running
    running.stop()


def _fit_pids(system: BackgroundGateway) -> list[int]:
    (worker,) = system.gateway.workers
    return worker.fit_pids()


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _until_fitting(stream: Any) -> jobs_pb2.JobEvent:
    """Read a Train stream until its job is fitting; that event."""
    for response in stream:
        if response.event.stage == jobs_pb2.STAGE_FITTING:
            return response.event  # type: ignore[no-any-return]
        assert response.event.state in (jobs_pb2.JOB_STATE_QUEUED, jobs_pb2.JOB_STATE_RUNNING)
    raise AssertionError("the job ended before it was fitting")


def _timed_job(channel: grpc.Channel) -> float:
    started = time.monotonic()
    events = events_of(jobs(channel).Train(diabetes_request(), timeout=60))
    assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED, events[-1]
    return time.monotonic() - started


@pytest.mark.parametrize("broker", ["memory", "rabbitmq", "redis"])
def test_cancel_stops_a_running_fit_at_once(tmp_path: Path, broker: str) -> None:
    running = _system(tmp_path, broker)
    try:
        with grpc.insecure_channel(running.address) as channel:
            alone = _timed_job(channel)  # also warms the child: the next fit starts at once
            stream = jobs(channel).Train(diabetes_request(params=ENDLESS_FIT), timeout=120)
            fitting = _until_fitting(stream)
            (child,) = _fit_pids(running)
            cancelled_at = time.monotonic()
            response = jobs(channel).CancelJob(jobs_pb2.CancelJobRequest(job_id=fitting.job_id))
            assert response.job.state == jobs_pb2.JOB_STATE_CANCELLED
            final = events_of(stream)[-1]
            assert final.state == jobs_pb2.JOB_STATE_CANCELLED
            # It says where the job was: the attempt and the stage it was cancelled in.
            assert (final.attempt, final.stage) == (1, jobs_pb2.STAGE_FITTING)
            assert final.message == "cancelled by request while fitting (attempt 1)"
            next_took = _timed_job(channel)
            # The fit's process is gone and another took its place; the next job did not wait
            # for the cancelled fit: it ran within a second of the cancel plus its own time.
            assert not _alive(child)
            (replacement,) = _fit_pids(running)
            assert replacement != child
            assert time.monotonic() - cancelled_at < 1.0 + next_took
            assert next_took < 1.0 + 2 * alone, (next_took, alone)
    finally:
        running.stop()
        _cleanup(broker, running.settings.broker.namespace)


def test_a_fit_past_its_time_limit_fails_and_the_worker_goes_on(
    system: BackgroundGateway,
) -> None:
    with grpc.insecure_channel(system.address) as channel:
        request = diabetes_request(params=ENDLESS_FIT, timeout_seconds=1.5)
        started = time.monotonic()
        events = events_of(jobs(channel).Train(request, timeout=60))
        assert_well_formed(events)
        failed = events[-1]
        assert failed.state == jobs_pb2.JOB_STATE_FAILED
        assert failed.error.code == "DEADLINE_EXCEEDED"
        assert "time limit of 1.5 s" in failed.error.message
        assert time.monotonic() - started < 10
        assert models(channel).ListModels(models_pb2.ListModelsRequest()).models == []
        _timed_job(channel)


def test_the_server_time_limit_caps_a_request_s(tmp_path: Path) -> None:
    running = _system(tmp_path, train_timeout=1.0)
    try:
        with grpc.insecure_channel(running.address) as channel:
            request = diabetes_request(params=ENDLESS_FIT, timeout_seconds=600)
            failed = events_of(jobs(channel).Train(request, timeout=60))[-1]
            assert failed.error.code == "DEADLINE_EXCEEDED"
            assert "time limit of 1 s" in failed.error.message
    finally:
        running.stop()


@pytest.mark.parametrize("timeout", [-1.0, 0.0, float("nan")])
def test_a_time_limit_must_be_positive(system: BackgroundGateway, timeout: float) -> None:
    with grpc.insecure_channel(system.address) as channel:
        request = diabetes_request(timeout_seconds=timeout)
        code, message = refused(lambda: events_of(jobs(channel).Train(request, timeout=30)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "timeout_seconds" in message


def test_a_fit_past_its_memory_limit_fails_and_the_worker_goes_on(
    system: BackgroundGateway,
) -> None:
    with grpc.insecure_channel(system.address) as channel:
        # Gradient boosting sets aside a slot per stage before the first: gigabytes here.
        request = diabetes_request(
            estimator="gradient_boosting", params={"n_estimators": 200_000_000}
        )
        events = events_of(jobs(channel).Train(request, timeout=120))
        assert_well_formed(events)
        failed = events[-1]
        assert failed.state == jobs_pb2.JOB_STATE_FAILED
        assert failed.error.code == "RESOURCE_EXHAUSTED", failed.error
        assert "memory" in failed.error.message
        assert "256 MiB" in failed.error.message
        assert "MLGATE_TRAIN_MEMORY_LIMIT" in failed.error.message
        _timed_job(channel)


@pytest.mark.slow
def test_a_fit_process_killed_mid_fit_costs_one_attempt(system: BackgroundGateway) -> None:
    with grpc.insecure_channel(system.address) as channel:
        stream = jobs(channel).Train(
            diabetes_request(params={"n_estimators": 1500, "max_depth": 8}), timeout=120
        )
        fitting = _until_fitting(stream)
        (child,) = _fit_pids(system)
        os.kill(child, signal.SIGKILL)
        events = [fitting, *events_of(stream)]
        final = events[-1]
        assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED, final
        assert final.attempt == 2
        # The stream shows the second attempt start and make progress, not attempt 1's last step.
        second = [e for e in events if e.attempt == 2 and e.state == jobs_pb2.JOB_STATE_RUNNING]
        assert second, [(e.attempt, e.stage) for e in events]
        # Why attempt 1 ended, as its worker saw it and said in its AWAITING_RETRY event.
        died = "attempt 1: the fit process ended without an answer (exit code -9)"
        assert second[0].message.startswith(f"attempt 2 of 3 ({died}"), second[0].message
        (note,) = [e for e in events if e.stage == jobs_pb2.STAGE_AWAITING_RETRY]
        assert note.attempt == 1 and note.message.startswith(died), note
        assert note.message.endswith("the broker delivers the job again, as attempt 2 of 3")
        assert {jobs_pb2.STAGE_LOADING_DATA, jobs_pb2.STAGE_FITTING} <= {e.stage for e in second}
        seqs = [e.seq for e in events]
        assert seqs == sorted(set(seqs))
        listed = models(channel).ListModels(models_pb2.ListModelsRequest()).models
        assert [m.id for m in listed] == [final.train_result.model_id]
        assert not _alive(child)


@pytest.mark.parametrize(
    ("estimator", "params"),
    [
        ("random_forest", {"n_estimators": 3000, "max_depth": 8}),
        ("gradient_boosting", {"n_estimators": 6000, "max_depth": 2}),
    ],
)
def test_a_long_fit_reports_its_progress(
    system: BackgroundGateway, estimator: str, params: dict[str, Any]
) -> None:
    with grpc.insecure_channel(system.address) as channel:
        request = diabetes_request(estimator=estimator, params=params)
        events = events_of(jobs(channel).Train(request, timeout=120))
    assert_well_formed(events)
    assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
    fitting = [e for e in events if e.stage == jobs_pb2.STAGE_FITTING]
    shares = [e.progress for e in fitting]
    # Several steps between the fit's start (0.2) and its end (0.8), in order, a few a second.
    assert len(shares) >= 3, shares
    assert shares == sorted(shares) and 0.2 <= shares[0] < shares[-1] <= 0.8
    # At most a few a second (the fit process reports every quarter second at most; events can
    # bunch up on the way when the machine is busy, so the rate is over the whole fit).
    times = [e.time.ToNanoseconds() / 1e9 for e in fitting]
    assert (len(times) - 1) / (times[-1] - times[0]) <= 5, times


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["rabbitmq", "redis"])
def test_a_fit_longer_than_the_broker_liveness_checks_keeps_its_delivery(
    tmp_path: Path, broker: str
) -> None:
    # Heartbeats every second or two: a worker that missed them would lose the job to attempt 2.
    if broker == "rabbitmq":
        from tests.support.rabbitmq import SHARED_URL as RABBITMQ_URL

        liveness: dict[str, Any] = {"broker_url": f"{RABBITMQ_URL}?heartbeat=2"}
    else:
        liveness = {"redis_heartbeat_ttl": 2.0, "redis_reclaim_interval": 1.0}
    running = _system(tmp_path, broker, **liveness)
    try:
        with grpc.insecure_channel(running.address) as channel:
            request = diabetes_request(params={"n_estimators": 5000, "max_depth": 10})
            started = time.monotonic()
            events = events_of(jobs(channel).Train(request, timeout=180))
            took = time.monotonic() - started
        assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED, events[-1]
        assert {e.attempt for e in events[1:]} == {1}
        assert took > 5, f"the fit took {took:.1f} s: too short to show anything"
    finally:
        running.stop()
        _cleanup(broker, running.settings.broker.namespace)


@pytest.mark.slow
def test_a_fit_that_grows_past_its_memory_limit_fails(tmp_path: Path) -> None:
    running = _system(tmp_path, train_memory_limit=40 * 2**20)
    try:
        with grpc.insecure_channel(running.address) as channel:
            # Tree after tree, each a few tens of KiB: the limit is met partway, not at once.
            request = diabetes_request(params={"n_estimators": 100_000, "max_depth": None})
            failed = events_of(jobs(channel).Train(request, timeout=120))[-1]
            assert failed.error.code == "RESOURCE_EXHAUSTED", failed.error
            assert "limit of 40 MiB" in failed.error.message
            _timed_job(channel)
    finally:
        running.stop()


def _with_blanks(rows: int = 80) -> bytes:
    lines = ["size,colour,price"]
    for i in range(rows):
        size = "" if i % 6 == 0 else str(20 + i)
        colour = "" if i % 9 == 0 else ("red", "blue")[i % 2]
        lines.append(f"{size},{colour},{1000 + 30 * i + (50 if i % 2 else 0)}")
    return ("\n".join(lines) + "\n").encode()


def test_hist_gradient_boosting_trains_on_an_upload_with_blanks(system: BackgroundGateway) -> None:
    with grpc.insecure_channel(system.address) as channel:
        upload = datasets_pb2.UploadDatasetRequest(dataset_id="blanks", chunk=_with_blanks())
        described = datasets(channel).UploadDataset(iter([upload])).dataset
        assert {c.name: c.dtype for c in described.columns}["size"] == "numeric"
        request = jobs_pb2.TrainRequest(
            dataset_id="blanks", target="price", estimator="hist_gradient_boosting"
        )
        done = events_of(jobs(channel).Train(request, timeout=60))[-1]
        assert done.state == jobs_pb2.JOB_STATE_SUCCEEDED, done.error
        request.estimator = "random_forest"
        failed = events_of(jobs(channel).Train(request, timeout=60))[-1]
        assert failed.error.code == "INVALID_ARGUMENT"
        assert "missing values" in failed.error.message and "size, colour" in failed.error.message
        assert "impute" in failed.error.message
        assert failed.error.message.endswith("handles them: hist_gradient_boosting")


def test_a_fit_process_that_died_while_idle_is_replaced_before_the_next_fit(
    system: BackgroundGateway,
) -> None:
    with grpc.insecure_channel(system.address) as channel:
        _timed_job(channel)
        (idle,) = _fit_pids(system)
        os.kill(idle, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(idle) and time.monotonic() < deadline:
            time.sleep(0.01)  # a process's end has no event to await from here
        events = events_of(jobs(channel).Train(diabetes_request(), timeout=60))
        assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
        assert events[-1].attempt == 1  # no attempt lost to a process that was not fitting
        assert _fit_pids(system) != [idle]
