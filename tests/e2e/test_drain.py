"""A gateway process stopped with SIGTERM drains, on each broker: its health turns NOT_SERVING
while it still takes calls (``liveness`` stays SERVING), then it refuses new calls, and a call
that was running (a job's stream) goes on to the job's end before the process exits."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mlgate.v1 import jobs_pb2
from server.app import LIVENESS_SERVICE
from tests.support.fleets import BROKERS, STORES, fleet_cluster
from tests.support.gateway_calls import diabetes_request, hang_up, jobs
from tests.support.waiting import wait_for

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Seconds of fitting: the job outlives the drain delay.
SLOW_FIT = {"n_estimators": 3000, "max_depth": 10}
DRAINING = {"MLGATE_DRAIN_DELAY": "2", "MLGATE_DRAIN_GRACE": "60"}


def _refuses_new_calls(address: str, job_id: str) -> bool:
    # A fresh channel: a new connection, as a client arriving now would make.
    with grpc.insecure_channel(address) as channel:
        try:
            jobs(channel).GetJob(jobs_pb2.GetJobRequest(job_id=job_id), timeout=2)
        except grpc.RpcError as exc:
            return exc.code() == grpc.StatusCode.UNAVAILABLE
    return False


@pytest.mark.slow
@pytest.mark.parametrize("broker", BROKERS, ids=lambda broker: f"{broker}-broker")
def test_sigterm_turns_health_not_serving_then_running_calls_finish(
    broker: str, tmp_path: Path
) -> None:
    with fleet_cluster(tmp_path, broker, STORES["postgresql"](), DRAINING) as fleet:
        address = fleet.start_gateway()
        fleet.start_worker()
        ((process, _),) = fleet.gateways
        with grpc.insecure_channel(address) as channel:
            train = jobs(channel).Train(diabetes_request(params=SLOW_FIT), timeout=120)
            running = (r.event for r in train if r.event.state == jobs_pb2.JOB_STATE_RUNNING)
            job_id = next(running).job_id  # a worker is fitting it: the call runs on
            health = health_pb2_grpc.HealthStub(channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=60)
            assert next(watch).status == SERVING

            process.send_signal(signal.SIGTERM)
            assert next(watch).status == NOT_SERVING
            # NOT_SERVING first: new calls are still taken, and the process is alive.
            assert not _refuses_new_calls(address, job_id)
            liveness = health_pb2.HealthCheckRequest(service=LIVENESS_SERVICE)
            with grpc.insecure_channel(address) as fresh:
                check = health_pb2_grpc.HealthStub(fresh).Check(liveness, timeout=5)
            assert check.status == SERVING
            # A health watch is a running call too: left open, it would hold the stop to the grace.
            hang_up(watch)

            wait_for(lambda: _refuses_new_calls(address, job_id), 30, "new calls refused")
            refused_at = time.time()
            final = [r.event for r in train][-1]
        # The running call went on to the job's end, which came after new calls were refused.
        assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED, final
        assert final.time.ToNanoseconds() / 1e9 > refused_at
        assert process.wait(30) == 0
        assert "draining: NOT_SERVING; still taking calls for 2 s" in fleet.log(process)
