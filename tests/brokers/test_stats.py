"""What ``mlgate status`` and the metrics read from each broker: queue depth and live consumers."""

from __future__ import annotations

import threading

from brokers.base import PREDICT_QUEUE, TRAIN_QUEUE, Broker, Delivery, Message
from tests.brokers.conftest import BrokerFactory
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
