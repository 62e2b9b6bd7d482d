"""Broker outages for tests: a private RabbitMQ or Redis a test stops and starts again, and
waiting for the gateway's health to follow."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.rabbitmq import PrivateNode
from tests.support.redis import PrivateRedis

__all__ = ["Outage", "outage", "wait_status"]


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


def wait_status(address: str, status: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _status(address) != status:
        if time.monotonic() > deadline:
            pytest.fail(f"health did not become {status} within {timeout}s")
        time.sleep(0.2)  # health is polled as any load balancer polls it
