"""Faults a fleet of gateways on one PostgreSQL job store lives through, on each broker: a gateway
SIGKILLed between recording a job and publishing it (another gateway's outbox sweep publishes the
job), and PostgreSQL stopped for 3 s while predictions are submitted through both gateways (each
accepted job succeeds, the others are refused UNAVAILABLE naming PostgreSQL, none stays QUEUED)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from mlgate.v1 import jobs_pb2
from mlgate_client import MLGateClient
from tests.support.cluster import Cluster
from tests.support.fleets import BROKERS, STORES, fleet_cluster
from tests.support.gateway_calls import diabetes_request, first_event, hang_up, jobs, rows
from tests.support.postgres import PrivatePostgres
from tests.support.samples import DIABETES_FEATURES, DOC_ROW
from tests.support.waiting import wait_for

# A stranded job is swept 3 s after it was recorded (the outbox's threshold must be above the
# publish timeout); Redis hands a dead gateway's unrecorded events on after 3 s too.
# Seconds of fitting: a job a worker holds while PostgreSQL is away.
SLOW_FIT = {"n_estimators": 3000, "max_depth": 10}
FAST = {
    "MLGATE_PUBLISH_TIMEOUT": "2",
    "MLGATE_OUTBOX_AFTER": "3",
    "MLGATE_REDIS_HEARTBEAT_TTL": "3",
    "MLGATE_REDIS_RECLAIM_INTERVAL": "1",
}


@pytest.fixture(params=BROKERS, ids=lambda broker: f"{broker}-broker")
def broker(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _states(address: str, state: int) -> list[str]:
    with grpc.insecure_channel(address) as channel:
        request = jobs_pb2.ListJobsRequest(state=state, page_size=1000)  # type: ignore[arg-type]
        return [job.id for job in jobs(channel).ListJobs(request, timeout=10).jobs]


def _none_unfinished(address: str) -> bool:
    return not any(
        _states(address, state) for state in (jobs_pb2.JOB_STATE_QUEUED, jobs_pb2.JOB_STATE_RUNNING)
    )


@pytest.mark.slow
def test_a_gateway_killed_between_recording_and_publishing_leaves_no_job_queued(
    broker: str, tmp_path: Path
) -> None:
    with fleet_cluster(tmp_path, broker, STORES["postgresql"](), FAST) as fleet:
        # The test-only fault point: this gateway SIGKILLs itself once it has recorded a job.
        doomed = fleet.start_gateway(MLGATE_FAULT_AFTER_RECORD="1")
        survivor = fleet.start_gateway()
        fleet.start_worker()

        with grpc.insecure_channel(doomed) as channel:
            request = diabetes_request(params={"n_estimators": 5})
            with pytest.raises(grpc.RpcError) as refused:
                list(jobs(channel).Train(request, timeout=30))
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        (process,) = [p for p, address in fleet.gateways if address == doomed]
        assert process.wait(10) == -signal.SIGKILL

        # Recorded, never published by its gateway: the survivor's sweep queues it.
        (job_id,) = _states(survivor, 0)
        with MLGateClient(survivor, timeout=30) as client:
            events = list(client.watch(job_id))
        assert events[0].state == jobs_pb2.JOB_STATE_QUEUED
        assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED, events[-1]
        # Published once: one attempt, run by the one worker.
        assert {e.attempt for e in events[1:]} == {1}
        survivor_process = next(p for p, address in fleet.gateways if address == survivor)
        assert "outbox: published 1 jobs" in fleet.log(survivor_process)
        assert _none_unfinished(survivor)


@dataclass
class Submissions:
    """Predictions submitted through the gateways in turn, until stopped: the ids of those
    accepted and the (code, message) of those refused."""

    addresses: list[str]
    model_id: str
    accepted: list[str] = field(default_factory=list)
    refused: list[tuple[grpc.StatusCode, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        channels = [grpc.insecure_channel(address) for address in self.addresses]
        request = jobs_pb2.PredictRequest(model_id=self.model_id, rows=rows(DOC_ROW))
        try:
            turn = 0
            while not self.stop.is_set():
                call = jobs(channels[turn % len(channels)]).Predict(request, timeout=15)
                turn += 1
                try:
                    # The first event is sent once the job is recorded and queued.
                    self.accepted.append(first_event(call).job_id)
                except grpc.RpcError as exc:
                    self.refused.append((exc.code(), exc.details() or ""))
                finally:
                    hang_up(call)  # the job goes on: it is the gateways' now
                self.stop.wait(0.05)  # a steady pace of submissions, not a flood
        finally:
            for channel in channels:
                channel.close()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL of the test's own: stopping the shared one would break other tests."""
    with PrivatePostgres() as server:
        yield server


def _outcome_logged(fleet: Cluster, job_id: str) -> bool:
    """Whether a worker says it has published ``job_id``'s outcome (its log is the only sign)."""
    return any(f"train job {job_id} succeeded" in fleet.log(worker) for worker in fleet.workers)


@pytest.mark.slow
def test_predictions_through_two_gateways_across_a_postgresql_outage(
    broker: str, tmp_path: Path, private_postgres: PrivatePostgres
) -> None:
    with fleet_cluster(tmp_path, broker, private_postgres.url, FAST) as fleet:
        addresses = [fleet.start_gateway(), fleet.start_gateway()]
        fleet.start_worker()
        with MLGateClient(",".join(addresses), timeout=60) as client:
            params = {"n_estimators": 5}
            model_id = client.train("diabetes", "target", DIABETES_FEATURES, params=params).model_id
            # A job a worker holds through the outage: its outcome is published meanwhile.
            held = client.submit_train("diabetes", "target", DIABETES_FEATURES, params=SLOW_FIT)
            running = (e for e in client.watch(held) if e.state == jobs_pb2.JOB_STATE_RUNNING)
            assert next(running, None) is not None, "the job ended without running"

        submissions = Submissions(addresses, model_id)
        submitting = threading.Thread(target=submissions.run)
        submitting.start()
        try:
            wait_for(lambda: len(submissions.accepted) >= 5, 30, "predictions accepted")
            private_postgres.stop()
            stopped = time.monotonic()
            assert not _outcome_logged(fleet, held), "the fit ended before the outage"
            wait_for(lambda: _outcome_logged(fleet, held), 120, "the held job's outcome")
            # At least 3 s without PostgreSQL, while submissions go on.
            time.sleep(max(0.0, stopped + 3 - time.monotonic()))
            private_postgres.start()
            after = len(submissions.accepted)
            wait_for(
                lambda: len(submissions.accepted) >= after + 5,
                60,
                "predictions accepted once PostgreSQL is back",
            )
        finally:
            submissions.stop.set()
            submitting.join(30)

        assert submissions.refused, "no submission met the outage"
        for code, message in submissions.refused:
            assert code == grpc.StatusCode.UNAVAILABLE, (code, message)
            assert "the job store (postgresql)" in message, message
            assert private_postgres.password not in message
        # Each accepted job succeeds, and the outcome published during the outage is recorded.
        accepted = {held, *submissions.accepted}
        wait_for(
            lambda: accepted <= set(_states(addresses[1], jobs_pb2.JOB_STATE_SUCCEEDED)),
            60,
            "every accepted job SUCCEEDED",
        )
        # A submission refused after its record was written (the commit's answer lost) is
        # published by an outbox sweep: nothing stays QUEUED, nothing FAILED.
        wait_for(lambda: _none_unfinished(addresses[0]), 30, "no job left QUEUED or RUNNING")
        assert _states(addresses[0], jobs_pb2.JOB_STATE_FAILED) == []
