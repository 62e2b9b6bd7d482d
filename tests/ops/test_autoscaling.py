"""The autoscaling signals as an autoscaler sees them: with a gateway and no worker, the backlog and
the oldest job's age rise on /metrics; once a worker starts, they fall to 0. On RabbitMQ and Redis,
with gateway and worker processes as operators run them (the embedded broker is covered by
tests/brokers/test_stats.py: its workers live in the gateway's process)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from brokers._redis_keys import WORK_GROUP, Keys
from brokers.base import PREDICT_QUEUE, TRAIN_QUEUE
from mlgate_client import MLGateClient
from tests.support.cluster import Cluster
from tests.support.fresh import free_port
from tests.support.samples import DIABETES_FEATURES
from tests.support.scraping import Samples, scrape, value
from tests.support.waiting import wait_for

JOBS = 3
WAIT = 60.0


@pytest.fixture(params=["rabbitmq", "redis"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, request.param)
    try:
        yield cluster
    finally:
        cluster.stop()


def _sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_backlog_and_age_rise_without_workers_and_fall_to_zero_with_one(cluster: Cluster) -> None:
    port = free_port()
    address = cluster.start_gateway(MLGATE_METRICS_PORT=str(port))
    streams = cluster.env["MLGATE_BROKER"] == "redis"
    train_stream = {"queue": TRAIN_QUEUE, "stream": Keys(cluster.namespace).queue(TRAIN_QUEUE)}

    with MLGateClient(address, timeout=30) as client:
        jobs = [
            client.submit_train("diabetes", target="target", features=DIABETES_FEATURES)
            for _ in range(JOBS)
        ]
        wait_for(
            lambda: value(scrape(port), "mlgate_queue_depth", queue=TRAIN_QUEUE) == JOBS,
            WAIT,
            f"a train backlog of {JOBS}",
        )
        first = scrape(port)
        assert value(first, "mlgate_workers") == 0
        assert value(first, "mlgate_queue_depth", queue=PREDICT_QUEUE) == 0
        if streams:
            group = {**train_stream, "group": WORK_GROUP}
            assert value(first, "mlgate_stream_lag", **group) == JOBS
            assert value(first, "mlgate_stream_pending", **group) == 0
        # Redis tells the age itself; RabbitMQ cannot without taking the job, and the gateway
        # reads it from the job store instead.
        age = _sample(first, "mlgate_queue_oldest_seconds", queue=TRAIN_QUEUE)
        assert age is not None
        assert _sample(first, "mlgate_queue_oldest_seconds", queue=PREDICT_QUEUE) == 0.0

        def older() -> bool:
            later = _sample(scrape(port), "mlgate_queue_oldest_seconds", queue=TRAIN_QUEUE)
            return later is not None and later >= age + 1.0

        wait_for(older, WAIT, "the oldest job's age to grow")

        cluster.start_worker()
        for job in jobs:
            assert client.wait(job).model_id

    def drained() -> bool:
        now = scrape(port)
        figures = [
            _sample(now, "mlgate_queue_depth", queue=TRAIN_QUEUE),
            _sample(now, "mlgate_queue_oldest_seconds", queue=TRAIN_QUEUE),
        ]
        if streams:
            group = {**train_stream, "group": WORK_GROUP}
            figures += [
                _sample(now, "mlgate_stream_lag", **group),
                _sample(now, "mlgate_stream_pending", **group),
            ]
        return figures == [0.0] * len(figures) and value(now, "mlgate_workers") == 1

    wait_for(drained, WAIT, "the backlog, its age and the group's figures to fall to 0")
