"""Several gateways as one service, seen from the client: two gateway processes on one shared job
store (Redis or PostgreSQL) and a worker, on each broker. A job submitted through one gateway is
watched, listed, cancelled and predicted through the other; a client given both addresses follows
a job across the SIGKILL of the gateway it was watching through, with every event once and in
order."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mlgate.v1 import jobs_pb2
from mlgate_client import MLGateClient
from tests.support.cluster import Cluster
from tests.support.fleets import BROKERS, STORES, fleet_cluster
from tests.support.fresh import free_port
from tests.support.samples import DIABETES_FEATURES, DOC_ROW

# Seconds of fitting: long enough to be cancelled, or to outlive a gateway, mid-fit.
SLOW_FIT = {"n_estimators": 3000, "max_depth": 10}
# Redis hands a dead gateway's unrecorded events to another once its heartbeat has expired.
FAST_RECLAIM = {"MLGATE_REDIS_HEARTBEAT_TTL": "3", "MLGATE_REDIS_RECLAIM_INTERVAL": "1"}


@pytest.fixture(
    params=[(broker, store) for broker in BROKERS for store in STORES],
    ids=lambda param: f"{param[0]}-broker-{param[1]}-store",
)
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    """A cluster whose gateways share one job store; the test starts them and the worker."""
    broker, store = request.param
    with fleet_cluster(tmp_path, broker, STORES[store](), FAST_RECLAIM) as cluster:
        yield cluster


def _until_running(events: Iterator[jobs_pb2.JobEvent]) -> list[jobs_pb2.JobEvent]:
    """The job's events up to the first RUNNING one (a worker is fitting it)."""
    seen = []
    for event in events:
        seen.append(event)
        if event.state == jobs_pb2.JOB_STATE_RUNNING:
            return seen
    pytest.fail(f"the job ended without running: {seen[-1] if seen else 'no events'}")


def _train(client: MLGateClient, **params: float) -> str:
    return client.submit_train(
        "diabetes", "target", features=DIABETES_FEATURES, params=params or SLOW_FIT
    )


@pytest.mark.slow
def test_a_job_submitted_through_one_gateway_is_followed_through_the_other(
    fleet: Cluster,
) -> None:
    one, two = fleet.start_gateway(), fleet.start_gateway()
    fleet.start_worker()
    with MLGateClient(one, timeout=30) as first, MLGateClient(two, timeout=30) as second:
        trained = first.wait(_train(first, n_estimators=10))
        assert second.predict(trained.model_id, [DOC_ROW]).model_id == trained.model_id

        job_id = _train(first)
        assert job_id in [job.id for job in second.list_jobs(kind="train")]
        events = second.watch(job_id)
        assert _until_running(events)[-1].job_id == job_id
        assert second.cancel_job(job_id).state == "cancelled"
        final = list(events)[-1]
        assert final.state == jobs_pb2.JOB_STATE_CANCELLED
        assert final.message.startswith("cancelled by request"), final.message
        assert first.get_job(job_id).state == "cancelled"


@pytest.mark.slow
def test_a_watch_moves_to_the_other_gateway_when_its_gateway_is_killed(fleet: Cluster) -> None:
    one = fleet.start_gateway()
    fleet.start_worker()
    # The second gateway is named now and started once the job is followed through the first:
    # the client's stream can only be on the gateway that is killed.
    later = free_port()
    with MLGateClient(f"{one},127.0.0.1:{later}", timeout=30, resume_timeout=60) as client:
        job_id = _train(client)
        events = client.watch(job_id)
        seen = [next(events)]  # the stream is open, on the first gateway
        two = fleet.start_gateway(port=later)
        seen += _until_running(events)
        (victim,) = [process for process, address in fleet.gateways if address == one]
        fleet.kill(victim)
        killed_at = datetime.now(UTC)
        seen += events
        assert seen[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED, seen[-1]
        # It ended after the kill: its last events came through the other gateway.
        assert seen[-1].time.ToDatetime(tzinfo=UTC) > killed_at
        seqs = [e.seq for e in seen]
        assert seqs == sorted(set(seqs)), f"seqs not strictly increasing: {seqs}"

        # Every event the job has, as the surviving gateway tells it: none missed, none twice.
        with MLGateClient(two, timeout=30) as survivor:
            assert seqs == [e.seq for e in survivor.watch(job_id)]
        # Calls through the client's two addresses go to the gateway that is left.
        assert client.get_job(job_id).state == "succeeded"
        model_id = seen[-1].train_result.model_id
        assert client.predict(model_id, [DOC_ROW]).model_id == model_id
