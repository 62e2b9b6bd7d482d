"""What ``mlgate status`` and the metrics read from each broker: queue depth, live consumers, the
oldest waiting job's age and, on a broker built on streams, its consumer groups."""

from __future__ import annotations

import threading

import pytest

from brokers._redis_keys import WORK_GROUP
from brokers.base import PREDICT_QUEUE, TRAIN_QUEUE, Broker, Delivery, Message, QueueStats
from tests.support.broker_backends import BrokerFactory
from tests.support.waiting import wait_for

WAIT = 20.0


def _figures(broker: Broker) -> dict[str, tuple[int, int]]:
    return {q.name: (q.depth, q.consumers) for q in broker.stats().queues}


def test_stats_count_waiting_jobs_and_live_consumers(make_broker: BrokerFactory) -> None:
    one, two = make_broker(), make_broker()
    assert _figures(one) == {TRAIN_QUEUE: (0, 0), PREDICT_QUEUE: (0, 0)}

    for i in range(3):
        one.publish(TRAIN_QUEUE, Message(f"job-{i}", b"x"), timeout=WAIT)
    wait_for(lambda: _figures(one)[TRAIN_QUEUE] == (3, 0), WAIT, "a train depth of 3")

    # Two workers each hold one job unsettled: one job waits, two consumers are alive.
    release = threading.Event()
    started = threading.Semaphore(0)

    def hold(delivery: Delivery) -> None:
        started.release()
        release.wait(WAIT)
        delivery.ack()

    subscriptions = [b.consume(TRAIN_QUEUE, hold, prefetch=1) for b in (one, two)]
    try:
        assert started.acquire(timeout=WAIT) and started.acquire(timeout=WAIT)
        wait_for(lambda: _figures(two)[TRAIN_QUEUE] == (1, 2), WAIT, "1 waiting and 2 consumers")
        assert _figures(two)[PREDICT_QUEUE] == (0, 0)
    finally:
        release.set()
        for subscription in subscriptions:
            subscription.cancel(WAIT)
    wait_for(lambda: _figures(one)[TRAIN_QUEUE][1] == 0, WAIT, "the consumers to be gone")


def _queue(broker: Broker, name: str) -> QueueStats:
    (found,) = (q for q in broker.stats().queues if q.name == name)
    return found


def test_the_oldest_waiting_job_ages_until_a_worker_takes_it(
    make_broker: BrokerFactory, request: pytest.FixtureRequest
) -> None:
    broker = make_broker()
    assert _queue(broker, PREDICT_QUEUE).oldest_seconds in (0.0, None)
    broker.publish(PREDICT_QUEUE, Message("old", b"x"), timeout=WAIT)
    wait_for(lambda: _queue(broker, PREDICT_QUEUE).depth == 1, WAIT, "the job to wait")
    if request.node.callspec.params["make_broker"] == "rabbitmq":
        # Reading a quorum queue's head takes the message and counts a delivery: it never tells.
        assert _queue(broker, PREDICT_QUEUE).oldest_seconds is None
        assert broker.stats().groups == ()
        return

    def oldest() -> float:
        age = _queue(broker, PREDICT_QUEUE).oldest_seconds
        assert age is not None
        return age

    wait_for(lambda: oldest() >= 0.5, WAIT, "the waiting job to age")
    broker.publish(PREDICT_QUEUE, Message("new", b"x"), timeout=WAIT)
    assert oldest() >= 0.5  # still the first job's age, not the newest one's
    assert _queue(broker, TRAIN_QUEUE).oldest_seconds == 0.0

    release = threading.Event()
    taken: list[str] = []

    def hold(delivery: Delivery) -> None:
        taken.append(delivery.message.job_id)
        release.wait(WAIT)
        delivery.ack()

    subscription = broker.consume(PREDICT_QUEUE, hold, prefetch=1)
    try:
        wait_for(lambda: taken == ["old"], WAIT, "a worker to take the first job")
        # The second job waits now, and it is younger than the first one had become.
        wait_for(lambda: oldest() < 0.5, WAIT, "the age of the job still waiting")
        groups = {g.queue: g for g in broker.stats().groups}
        if groups:  # a broker built on streams: the workers' group on each work stream
            predict = groups[PREDICT_QUEUE]
            assert (predict.group, predict.lag, predict.pending) == (WORK_GROUP, 1, 1)
            assert predict.stream.endswith(":queue:predict")
            assert set(groups) == {TRAIN_QUEUE, PREDICT_QUEUE}
    finally:
        release.set()
        wait_for(lambda: taken == ["old", "new"], WAIT, "the second job to be taken")
        subscription.cancel(WAIT)
    wait_for(lambda: _queue(broker, PREDICT_QUEUE).depth == 0, WAIT, "an empty queue")
    assert oldest() == 0.0
    assert all((g.lag, g.pending) == (0, 0) for g in broker.stats().groups)
