"""What the RabbitMQ broker adds to the contract: a topology operators can preload, confirmed and
durable publishing, dead letters with their reason, and two connections whatever it does."""

from __future__ import annotations

import json
import queue

import pytest

from brokers._rabbitmq_topology import Topology
from brokers.base import PREDICT_QUEUE, TRAIN_QUEUE, Delivery, Message
from brokers.errors import PublishNotConfirmed
from brokers.rabbitmq import RabbitMQBroker
from tests.support.fresh import unique_namespace
from tests.support.rabbitmq import (
    DEPLOY,
    SHARED_URL,
    WAIT,
    Factory,
    PrivateNode,
    collect,
    delete_namespace,
    raw_channel,
    ready_count,
    take,
    wait_for,
)
from tests.support.rabbitmq import private as private  # the fixture, shared
from tests.support.rabbitmq import shared as shared  # the fixture, shared

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
