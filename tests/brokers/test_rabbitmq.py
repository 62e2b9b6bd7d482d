"""What the RabbitMQ broker adds to the contract: a topology operators can preload, confirmed and
durable publishing, heartbeats during long jobs, and surviving a broker that closes connections,
blocks publishers, restarts, or a consumer that is killed."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pika
import pytest
from prometheus_client import REGISTRY

from brokers._rabbitmq_topology import Topology
from brokers.base import PREDICT_QUEUE, TRAIN_QUEUE, Delivery, EventDelivery, Message
from brokers.errors import BrokerUnavailable, PublishNotConfirmed
from brokers.rabbitmq import RabbitMQBroker
from tests.support.fresh import unique_namespace
from tests.support.rabbitmq import (
    DEPLOY,
    SHARED_URL,
    PrivateNode,
    delete_namespace,
    rabbitmq_brokers,
    wait_for,
)

WAIT = 30.0
ROOT = Path(__file__).resolve().parents[2]
Factory = Callable[[], RabbitMQBroker]


@pytest.fixture
def shared() -> Iterator[Factory]:
    """Brokers on the shared server under a fresh namespace (deleted afterwards)."""
    yield from rabbitmq_brokers(SHARED_URL)


@pytest.fixture
def private(private_rabbitmq: PrivateNode) -> Iterator[Factory]:
    """Brokers on the private node, which the test may break."""
    yield from rabbitmq_brokers(private_rabbitmq.url)


@contextmanager
def raw_channel(url: str) -> Iterator[Any]:
    """A plain pika channel, to look at what the broker left on the server."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        yield connection.channel()
    finally:
        connection.close()


def ready_count(url: str, queue_name: str) -> int:
    with raw_channel(url) as channel:
        count: int = channel.queue_declare(queue_name, passive=True).method.message_count
        return count


def collect(into: queue.Queue[Delivery]) -> Callable[[Delivery], None]:
    def handler(delivery: Delivery) -> None:
        delivery.ack()
        into.put(delivery)

    return handler


def take(source: queue.Queue[Any], what: str) -> Any:
    try:
        return source.get(timeout=WAIT)
    except queue.Empty:
        pytest.fail(f"no {what} within {WAIT}s")


# --- the topology ---


def test_definitions_file_is_the_topology_the_code_declares() -> None:
    shipped = json.loads((DEPLOY / "definitions.json").read_text())
    assert shipped == Topology().definitions(), (
        "deploy/rabbitmq/definitions.json is stale; regenerate it with: "
        ".venv/bin/python -m brokers._rabbitmq_topology > deploy/rabbitmq/definitions.json"
    )


@pytest.mark.slow  # starts the private node
def test_preloaded_definitions_agree_with_what_the_code_declares(
    private_rabbitmq: PrivateNode,
) -> None:
    # The private node booted with deploy/rabbitmq/rabbitmq.conf, which loads definitions.json.
    listed = private_rabbitmq.ctl("list_queues", "name", "type", "--no-table-headers", "--quiet")
    assert {tuple(line.split()) for line in listed.splitlines() if line.startswith("mlgate.")} == {
        ("mlgate.train", "quorum"),
        ("mlgate.predict", "quorum"),
        ("mlgate.train.dead", "classic"),
        ("mlgate.predict.dead", "classic"),
        ("mlgate.events", "classic"),
        ("mlgate.inference", "classic"),
    }
    # Declaring a queue with other arguments than it has closes the channel: the broker would
    # never become ready, and start() would raise.
    broker = RabbitMQBroker(private_rabbitmq.url)
    try:
        broker.start()
        got: queue.Queue[Delivery] = queue.Queue()
        sub = broker.consume(TRAIN_QUEUE, collect(got), prefetch=1)
        broker.publish(TRAIN_QUEUE, Message("job-preloaded", b"x"), timeout=WAIT)
        assert take(got, "delivery").message.job_id == "job-preloaded"
        sub.cancel(WAIT)
    finally:
        broker.close()


# --- publishing ---


def test_publish_returns_once_the_message_is_stored_durably(shared: Factory) -> None:
    broker = shared()
    broker.publish(
        TRAIN_QUEUE, Message("job-durable", b"body", (("model-sha256", "abc"),)), timeout=WAIT
    )
    name = broker.topology.work_queue(TRAIN_QUEUE)
    with raw_channel(SHARED_URL) as channel:
        declared = channel.queue_declare(name, passive=True).method
        assert declared.message_count == 1  # confirmed means enqueued: no waiting needed
        method, properties, body = channel.basic_get(name, auto_ack=False)
        assert (body, properties.message_id, properties.delivery_mode) == (
            b"body",
            "job-durable",
            2,
        )
        assert properties.headers["model-sha256"] == "abc"
        channel.basic_nack(method.delivery_tag, requeue=True)


def test_a_message_for_a_deleted_queue_is_not_silently_dropped(shared: Factory) -> None:
    broker = shared()
    name = broker.topology.work_queue(PREDICT_QUEUE)
    with raw_channel(SHARED_URL) as channel:
        channel.queue_delete(name)
    # RabbitMQ returns the unroutable message; the broker declares the topology again and retries.
    broker.publish(PREDICT_QUEUE, Message("job-after-delete", b"x"), timeout=WAIT)
    assert ready_count(SHARED_URL, name) == 1


@pytest.mark.slow
def test_a_publish_the_broker_does_not_confirm_raises_within_its_timeout(
    private_rabbitmq: PrivateNode, private: Factory
) -> None:
    broker = private()
    try:
        # A memory alarm: RabbitMQ blocks every publishing connection and confirms nothing.
        private_rabbitmq.ctl("set_vm_memory_high_watermark", "0")
        # The node raises the alarm on its memory monitor's next check, not as the command returns.
        wait_for(
            lambda: "memory" in private_rabbitmq.ctl("eval", "rabbit_alarm:get_alarms()."),
            WAIT,
            "the node raising its memory alarm",
        )
        with pytest.raises(PublishNotConfirmed):
            broker.publish(TRAIN_QUEUE, Message("job-blocked", b"x"), timeout=2)
        wait_for(lambda: not broker.healthy(), WAIT, "the blocked broker reporting unhealthy")
    finally:
        private_rabbitmq.ctl("set_vm_memory_high_watermark", "0.4")
    wait_for(broker.healthy, WAIT, "the broker reporting healthy once unblocked")
    broker.publish(TRAIN_QUEUE, Message("job-unblocked", b"x"), timeout=WAIT)


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


# --- dead letters and resources ---


def test_dead_letters_keep_their_reason_and_order_and_listing_leaves_them(
    shared: Factory,
) -> None:
    broker = shared()
    done: queue.Queue[str] = queue.Queue()

    def handler(delivery: Delivery) -> None:
        delivery.dead_letter(f"bad input in {delivery.message.job_id}")
        done.put(delivery.message.job_id)

    sub = broker.consume(TRAIN_QUEUE, handler, prefetch=1)
    sent = [Message(f"job-{i}", f"body-{i}".encode(), (("k", str(i)),)) for i in range(4)]
    for message in sent:
        broker.publish(TRAIN_QUEUE, message, timeout=WAIT)
    assert [take(done, "dead letter") for _ in sent] == [m.job_id for m in sent]
    sub.cancel(WAIT)

    assert broker.dead_letters(TRAIN_QUEUE) == sent
    assert broker.dead_letters(TRAIN_QUEUE, limit=2) == sent[:2]
    assert broker.dead_letters(TRAIN_QUEUE) == sent  # still there, still in order
    with raw_channel(SHARED_URL) as channel:
        _method, properties, _body = channel.basic_get(broker.topology.dead_queue(TRAIN_QUEUE))
        assert properties.headers["x-mlgate-reason"] == "bad input in job-0"
        assert properties.headers["x-mlgate-attempts"] == 1


@pytest.mark.slow  # starts the private node
def test_a_broker_keeps_two_connections_whatever_it_does(
    private_rabbitmq: PrivateNode,
) -> None:
    namespace = unique_namespace()
    broker = RabbitMQBroker(private_rabbitmq.url, namespace=namespace)
    try:
        broker.start()
        got: queue.Queue[Delivery] = queue.Queue()
        subs = [
            broker.consume(PREDICT_QUEUE, collect(got), prefetch=8),
            broker.watch_events(lambda body: None),
        ]
        for i in range(50):
            broker.publish(PREDICT_QUEUE, Message(f"job-{i}", b"x"), timeout=WAIT)
            broker.publish_event(b"event", timeout=WAIT)
        for _ in range(50):
            take(got, "delivery")
        broker.dead_letters(PREDICT_QUEUE)
        listed = private_rabbitmq.ctl(
            "list_connections", "client_properties", "channels", "--no-table-headers", "--quiet"
        )
        mine = sorted(
            (role, int(line.split()[-1]))
            for line in listed.splitlines()
            for role in ("publisher", "consumer")
            if f"mlgate {namespace} {role}" in line
        )
        # One channel to publish on; one per subscription on the consumer connection.
        assert mine == [("consumer", 2), ("publisher", 1)]
        for sub in subs:
            sub.cancel(WAIT)
    finally:
        broker.close()
        delete_namespace(private_rabbitmq.url, namespace)
