"""The RabbitMQ broker under strain: heartbeats flow while a handler blocks for a long job, and
nothing is lost when the broker closes connections, restarts, or a consumer is killed."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from brokers.base import PREDICT_QUEUE, TRAIN_QUEUE, Delivery, EventDelivery, Message
from brokers.errors import BrokerUnavailable
from brokers.rabbitmq import RabbitMQBroker
from tests.support.rabbitmq import (
    ROOT,
    SHARED_URL,
    WAIT,
    Factory,
    PrivateNode,
    collect,
    rabbitmq_brokers,
    ready_count,
    take,
    wait_for,
)
from tests.support.rabbitmq import private as private  # the fixture, shared
from tests.support.rabbitmq import shared as shared  # the fixture, shared

# --- long jobs ---


@pytest.fixture
def short_heartbeat() -> Iterator[Factory]:
    # A 2 s heartbeat: RabbitMQ drops a connection that misses two in a row.
    yield from rabbitmq_brokers(f"{SHARED_URL}?heartbeat=2")


@pytest.mark.slow
def test_heartbeats_flow_while_a_handler_blocks_for_several_heartbeat_intervals(
    short_heartbeat: Factory,
) -> None:
    broker = short_heartbeat()
    attempts: queue.Queue[int] = queue.Queue()
    acked = threading.Event()

    def handler(delivery: Delivery) -> None:
        attempts.put(delivery.attempt)
        threading.Event().wait(6)  # a fit holding its own thread, not the connection's
        delivery.ack()  # raises BrokerUnavailable if the connection was lost meanwhile
        acked.set()

    sub = broker.consume(TRAIN_QUEUE, handler, prefetch=1)
    broker.publish(TRAIN_QUEUE, Message("job-long", b"x"), timeout=WAIT)
    assert acked.wait(WAIT)
    assert attempts.get_nowait() == 1
    with pytest.raises(queue.Empty):  # a bounded wait for something that must not happen
        attempts.get(timeout=2)
    assert broker.healthy()
    sub.cancel(WAIT)


@pytest.mark.slow
def test_a_handler_outlives_the_consumer_timeout(
    private_rabbitmq: PrivateNode, private: Factory
) -> None:
    if private_rabbitmq.version() < (3, 12):
        pytest.xfail(
            "RabbitMQ < 3.12 ignores x-consumer-timeout: raise consumer_timeout in rabbitmq.conf "
            "(deploy/rabbitmq/rabbitmq.conf) instead"
        )
    private_rabbitmq.ctl("eval", "application:set_env(rabbit, consumer_timeout, 2000).")
    try:
        broker = private()
        attempts: queue.Queue[int] = queue.Queue()
        acked = threading.Event()

        def handler(delivery: Delivery) -> None:
            attempts.put(delivery.attempt)
            threading.Event().wait(5)
            delivery.ack()
            acked.set()

        sub = broker.consume(TRAIN_QUEUE, handler, prefetch=1)
        broker.publish(TRAIN_QUEUE, Message("job-longer-than-timeout", b"x"), timeout=WAIT)
        assert acked.wait(WAIT)
        assert attempts.get_nowait() == 1
        with pytest.raises(queue.Empty):
            attempts.get(timeout=2)
        sub.cancel(WAIT)
    finally:
        private_rabbitmq.ctl("eval", "application:set_env(rabbit, consumer_timeout, 604800000).")


# --- connections lost ---


@pytest.mark.slow
def test_a_delivery_whose_connection_is_closed_comes_back_with_a_higher_attempt(
    private_rabbitmq: PrivateNode, private: Factory
) -> None:
    first, second = private(), private()
    started = threading.Event()
    release = threading.Event()
    stale_ack: queue.Queue[BaseException | None] = queue.Queue()

    def stuck(delivery: Delivery) -> None:
        started.set()
        release.wait(WAIT)
        try:
            delivery.ack()
            stale_ack.put(None)
        except BrokerUnavailable as exc:
            stale_ack.put(exc)

    sub_first = first.consume(TRAIN_QUEUE, stuck, prefetch=1)
    first.publish(TRAIN_QUEUE, Message("job-cut-off", b"x"), timeout=WAIT)
    assert started.wait(WAIT)
    private_rabbitmq.ctl("close_all_connections", "test: connection cut")
    # Consuming only now: a consumer cut off too would hand the message back a second time.
    got: queue.Queue[Delivery] = queue.Queue()
    sub_second = second.consume(TRAIN_QUEUE, collect(got), prefetch=1)
    redelivered = take(got, "redelivery")
    assert (redelivered.message.job_id, redelivered.attempt) == ("job-cut-off", 2)
    release.set()
    # The first handler finished after its delivery went back: its ack cannot count.
    assert isinstance(take(stale_ack, "ack outcome"), BrokerUnavailable)
    for sub in (sub_first, sub_second):
        sub.cancel(WAIT)


@pytest.mark.slow
def test_nothing_is_lost_when_the_broker_closes_every_connection(
    private_rabbitmq: PrivateNode, private: Factory
) -> None:
    producer, workers = private(), [private(), private()]
    total = 300
    handled: set[str] = set()
    lock = threading.Lock()
    some_handled = threading.Event()
    all_handled = threading.Event()

    def handler(delivery: Delivery) -> None:
        delivery.ack()  # may raise after the cut: then the job comes again
        with lock:
            handled.add(delivery.message.job_id)
            if len(handled) >= total // 3:
                some_handled.set()
            if len(handled) == total:
                all_handled.set()

    subs = [worker.consume(PREDICT_QUEUE, handler, prefetch=4) for worker in workers]
    errors: list[BaseException] = []

    def publish_all() -> None:
        try:
            for i in range(total):
                producer.publish(PREDICT_QUEUE, Message(f"job-{i}", b"x"), timeout=WAIT)
        except BaseException as exc:
            errors.append(exc)

    publisher = threading.Thread(target=publish_all)
    publisher.start()
    assert some_handled.wait(WAIT)
    private_rabbitmq.ctl("close_all_connections", "test: connections cut mid-stream")
    publisher.join(WAIT)
    assert errors == []  # publishes during the cut waited for the connection to come back
    assert all_handled.wait(WAIT), f"{total - len(handled)} jobs were never handled"
    for sub in subs:
        sub.cancel(WAIT)
    assert ready_count(private_rabbitmq.url, producer.topology.work_queue(PREDICT_QUEUE)) == 0


@pytest.mark.slow
def test_jobs_and_events_survive_a_node_restart(
    private_rabbitmq: PrivateNode, private: Factory
) -> None:
    worker, gateway = private(), private()
    late = RabbitMQBroker(
        private_rabbitmq.url, namespace=gateway.topology.namespace, connect_timeout=1
    )
    got: queue.Queue[Delivery] = queue.Queue()
    for i in range(5):  # jobs and events wait in their queues through the restart
        gateway.publish(TRAIN_QUEUE, Message(f"job-{i}", b"x"), timeout=WAIT)
        worker.publish_event(f"event-{i}".encode(), timeout=WAIT)
    sub = worker.consume(PREDICT_QUEUE, collect(got), prefetch=1)  # consuming through it
    reconnects = REGISTRY.get_sample_value("mlgate_broker_reconnects_total") or 0.0

    private_rabbitmq.stop()
    try:
        wait_for(lambda: not gateway.healthy(), WAIT, "the gateway's broker reporting unhealthy")
        with pytest.raises(BrokerUnavailable):
            gateway.publish(TRAIN_QUEUE, Message("job-during-outage", b"x"), timeout=1)
        # Progress, unconfirmed, does not wait for a node that is down: a job goes on without it.
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            worker.publish_event(b"progress-during-outage", timeout=WAIT, confirm=False)
        assert time.monotonic() - started < 1
        with pytest.raises(BrokerUnavailable, match="still trying"):
            late.start()
    finally:
        private_rabbitmq.start()
    try:
        wait_for(late.healthy, WAIT, "a broker started during the outage connecting by itself")
        wait_for(gateway.healthy, WAIT, "the gateway's broker reconnecting")
        # The gateway's and the worker's connections came back; late's first one is no reconnect.
        wait_for(
            lambda: (REGISTRY.get_sample_value("mlgate_broker_reconnects_total") or 0) > reconnects,
            WAIT,
            "mlgate_broker_reconnects_total to count the reconnections",
        )
        gateway.publish(PREDICT_QUEUE, Message("job-after", b"x"), timeout=WAIT)
        assert take(got, "delivery").message.job_id == "job-after"  # re-consumed
        sub.cancel(WAIT)

        sub = late.consume(TRAIN_QUEUE, collect(got), prefetch=1)
        assert sorted(take(got, "delivery").message.job_id for _ in range(5)) == [
            f"job-{i}" for i in range(5)
        ]
        sub.cancel(WAIT)
        events: queue.Queue[bytes] = queue.Queue()

        def record(delivery: EventDelivery) -> None:
            events.put(delivery.body)
            delivery.ack()

        sub = late.consume_events(record)
        assert [take(events, "event") for _ in range(5)] == [
            f"event-{i}".encode() for i in range(5)
        ]
        sub.cancel(WAIT)
    finally:
        late.close()


def test_a_killed_consumer_process_has_its_job_delivered_again(shared: Factory) -> None:
    broker = shared()
    namespace = broker.topology.namespace
    child = subprocess.Popen(
        [sys.executable, "-c", _STUCK_WORKER, SHARED_URL, namespace],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        broker.publish(TRAIN_QUEUE, Message("job-of-killed-worker", b"x"), timeout=WAIT)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"started job-of-killed-worker"
    finally:
        child.kill()
        child.wait(WAIT)
    got: queue.Queue[Delivery] = queue.Queue()
    sub = broker.consume(TRAIN_QUEUE, collect(got), prefetch=1)
    delivery = take(got, "redelivery")
    assert (delivery.message.job_id, delivery.attempt) == ("job-of-killed-worker", 2)
    sub.cancel(WAIT)


_STUCK_WORKER = """
import sys, threading
from brokers.rabbitmq import RabbitMQBroker
broker = RabbitMQBroker(sys.argv[1], namespace=sys.argv[2])
broker.start()
def handler(delivery):
    print("started", delivery.message.job_id, flush=True)
    threading.Event().wait()
broker.consume("train", handler, prefetch=1)
threading.Event().wait()
"""
