"""A gateway whose broker goes away: health follows it, submissions are refused, nothing is lost."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mlgate.v1 import jobs_pb2
from tests.e2e.helpers import assert_well_formed, diabetes_request, first_event, hang_up, jobs
from tests.support.fresh import unique_namespace
from tests.support.rabbitmq import PrivateNode
from tests.support.redis import PrivateRedis
from tests.support.system import gateway_settings, running_gateway


@dataclass
class Outage:
    """A private broker server that a test may stop and start again."""

    broker: str
    url: str
    stop: Callable[[], None]
    start: Callable[[], object]


@pytest.fixture(params=["rabbitmq", "redis"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outage]:
    if request.param == "rabbitmq":
        node: PrivateNode = request.getfixturevalue("private_rabbitmq")
        yield Outage("rabbitmq", node.url, node.stop, node.start)
        if not node.answers():
            node.start()
    else:
        server = PrivateRedis(tmp_path / "redis").start()
        try:
            yield Outage("redis", server.url, server.stop, server.start)
        finally:
            server.stop()


def _status(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        try:
            check = health_pb2_grpc.HealthStub(channel).Check
            return int(check(health_pb2.HealthCheckRequest(), timeout=2).status)
        except grpc.RpcError:
            return -1


def _wait_status(address: str, status: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _status(address) != status:
        if time.monotonic() > deadline:
            pytest.fail(f"health did not become {status} within {timeout}s")
        time.sleep(0.2)  # health is polled as any load balancer polls it


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
        _wait_status(address, health_pb2.HealthCheckResponse.SERVING)
        with grpc.insecure_channel(address) as channel:
            stream = jobs(channel).Train(
                diabetes_request(params={"n_estimators": 400, "max_depth": 10})
            )
            accepted = first_event(stream)
            hang_up(stream)

            outage.stop()
            _wait_status(address, health_pb2.HealthCheckResponse.NOT_SERVING)
            with pytest.raises(grpc.RpcError) as excinfo:
                list(jobs(channel).Train(diabetes_request(), timeout=30))
            assert excinfo.value.code() == grpc.StatusCode.UNAVAILABLE
            refused = (
                jobs(channel)
                .ListJobs(jobs_pb2.ListJobsRequest(state=jobs_pb2.JOB_STATE_FAILED))
                .jobs
            )
            assert [j.last_event.error.code for j in refused] == ["UNAVAILABLE"]

            outage.start()
            _wait_status(address, health_pb2.HealthCheckResponse.SERVING)
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
