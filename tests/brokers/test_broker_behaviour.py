"""The broker behaviour suite: written once against the contract, run against every backend."""

from __future__ import annotations

import queue
import threading

import pytest

from brokers.base import PREDICT_QUEUE, TRAIN_QUEUE, Delivery, EventDelivery, HandBack, Message
from tests.support.broker_backends import BrokerFactory

WAIT = 20.0


def _take(q: queue.Queue[Delivery], what: str = "a delivery") -> Delivery:
    try:
        return q.get(timeout=WAIT)
    except queue.Empty:
        pytest.fail(f"no {what} within {WAIT}s")


def _collect(broker_queue: queue.Queue[Delivery]):
    def handler(delivery: Delivery) -> None:
        broker_queue.put(delivery)

    return handler


def test_published_job_is_delivered_once_with_attempt_one(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    got: queue.Queue[Delivery] = queue.Queue()
    broker.publish(TRAIN_QUEUE, Message("job-1", b"payload"), timeout=WAIT)
    settled = threading.Event()

    def handler(delivery: Delivery) -> None:
        got.put(delivery)
        delivery.ack()
        settled.set()

    sub = broker.consume(TRAIN_QUEUE, handler, prefetch=1)
    delivery = _take(got)
    assert delivery.message == Message("job-1", b"payload")
    assert delivery.attempt == 1
    assert settled.wait(WAIT)
    sub.cancel(WAIT)

    # An acknowledged message never comes back: the next thing consumed is a later message.
    broker.publish(TRAIN_QUEUE, Message("job-2", b"later"), timeout=WAIT)
    sub = broker.consume(TRAIN_QUEUE, handler, prefetch=1)
    assert _take(got).message.job_id == "job-2"
    sub.cancel(WAIT)


def test_queues_are_separate(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    broker.publish(TRAIN_QUEUE, Message("train-job", b"t"), timeout=WAIT)
    broker.publish(PREDICT_QUEUE, Message("predict-job", b"p"), timeout=WAIT)
    got: queue.Queue[Delivery] = queue.Queue()

    def handler(delivery: Delivery) -> None:
        delivery.ack()
        got.put(delivery)

    sub = broker.consume(PREDICT_QUEUE, handler, prefetch=4)
    assert _take(got).message.job_id == "predict-job"
    sub.cancel(WAIT)
    sub = broker.consume(TRAIN_QUEUE, handler, prefetch=1)
    assert _take(got).message.job_id == "train-job"
    sub.cancel(WAIT)


def test_handler_that_raises_gets_the_message_again_with_a_higher_attempt(
    make_broker: BrokerFactory,
) -> None:
    broker = make_broker()
    attempts: queue.Queue[int] = queue.Queue()

    def handler(delivery: Delivery) -> None:
        attempts.put(delivery.attempt)
        if delivery.attempt < 3:
            raise RuntimeError("simulated crash in the job")
        delivery.ack()

    sub = broker.consume(TRAIN_QUEUE, handler, prefetch=1)
    broker.publish(TRAIN_QUEUE, Message("job-flaky", b"x"), timeout=WAIT)
    assert [attempts.get(timeout=WAIT) for _ in range(3)] == [1, 2, 3]
    sub.cancel(WAIT)


def test_unsettled_delivery_of_a_stopped_consumer_goes_to_the_next_consumer(
    make_broker: BrokerFactory,
) -> None:
    first, second = make_broker(), make_broker()
    started = threading.Event()
    release = threading.Event()

    def stuck(delivery: Delivery) -> None:
        started.set()
        release.wait(WAIT)  # returns without settling, like a worker that died mid-job

    sub = first.consume(TRAIN_QUEUE, stuck, prefetch=1)
    first.publish(TRAIN_QUEUE, Message("job-orphan", b"x"), timeout=WAIT)
    assert started.wait(WAIT)
    release.set()
    sub.cancel(WAIT)

    got: queue.Queue[Delivery] = queue.Queue()

    def handler(delivery: Delivery) -> None:
        got.put(delivery)
        delivery.ack()

    sub = second.consume(TRAIN_QUEUE, handler, prefetch=1)
    delivery = _take(got, "redelivery")
    assert delivery.message.job_id == "job-orphan"
    assert delivery.attempt == 2
    sub.cancel(WAIT)


def test_dead_lettered_message_is_kept_aside_and_not_redelivered(
    make_broker: BrokerFactory,
) -> None:
    broker = make_broker()
    got: queue.Queue[Delivery] = queue.Queue()

    def handler(delivery: Delivery) -> None:
        if delivery.message.job_id == "job-poison":
            delivery.dead_letter("poison for the test")
        else:
            delivery.ack()
        got.put(delivery)

    sub = broker.consume(TRAIN_QUEUE, handler, prefetch=1)
    broker.publish(TRAIN_QUEUE, Message("job-poison", b"bad"), timeout=WAIT)
    assert _take(got).message.job_id == "job-poison"
    broker.publish(TRAIN_QUEUE, Message("job-good", b"ok"), timeout=WAIT)
    assert _take(got).message.job_id == "job-good"
    sub.cancel(WAIT)
    assert [m.job_id for m in broker.dead_letters(TRAIN_QUEUE)] == ["job-poison"]
    assert broker.dead_letters(PREDICT_QUEUE) == []


def test_a_delivery_is_settled_once_however_often_it_is_asked(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    done: queue.Queue[Delivery] = queue.Queue()

    def handler(delivery: Delivery) -> None:
        delivery.dead_letter("first reason")
        delivery.dead_letter("second reason")
        delivery.ack()
        done.put(delivery)

    sub = broker.consume(TRAIN_QUEUE, handler, prefetch=1)
    broker.publish(TRAIN_QUEUE, Message("job-twice", b"x"), timeout=WAIT)
    assert _take(done).message.job_id == "job-twice"
    sub.cancel(WAIT)
    assert [m.job_id for m in broker.dead_letters(TRAIN_QUEUE)] == ["job-twice"]


def test_prefetch_bounds_the_jobs_in_flight(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    lock = threading.Lock()
    in_flight = 0
    peak = 0
    both_running = threading.Event()
    release = threading.Event()
    done: queue.Queue[str] = queue.Queue()

    def handler(delivery: Delivery) -> None:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
            if in_flight == 2:
                both_running.set()
        release.wait(WAIT)
        with lock:
            in_flight -= 1
        delivery.ack()
        done.put(delivery.message.job_id)

    for i in range(5):
        broker.publish(PREDICT_QUEUE, Message(f"job-{i}", b"x"), timeout=WAIT)
    sub = broker.consume(PREDICT_QUEUE, handler, prefetch=2)
    assert both_running.wait(WAIT), "prefetch=2 should run two jobs at once"
    release.set()
    assert sorted(done.get(timeout=WAIT) for _ in range(5)) == [f"job-{i}" for i in range(5)]
    sub.cancel(WAIT)
    assert peak == 2


def test_events_wait_for_a_consumer_and_arrive_in_order(make_broker: BrokerFactory) -> None:
    worker, gateway = make_broker(), make_broker()
    for i in range(20):
        worker.publish_event(f"event-{i}".encode(), timeout=WAIT)
    got: queue.Queue[bytes] = queue.Queue()

    def handler(delivery: EventDelivery) -> None:
        got.put(delivery.body)
        delivery.ack()

    sub = gateway.consume_events(handler)
    assert [got.get(timeout=WAIT) for _ in range(20)] == [f"event-{i}".encode() for i in range(20)]
    sub.cancel(WAIT)


def test_unconfirmed_events_keep_their_place_before_a_confirmed_one(
    make_broker: BrokerFactory,
) -> None:
    worker, gateway = make_broker(), make_broker()
    live: queue.Queue[bytes] = queue.Queue()
    durable: queue.Queue[bytes] = queue.Queue()

    def record(delivery: EventDelivery) -> None:
        durable.put(delivery.body)
        delivery.ack()

    subs = [gateway.watch_events(live.put), gateway.consume_events(record)]
    for i in range(20):
        worker.publish_event(f"progress-{i}".encode(), timeout=WAIT, confirm=False)
    worker.publish_event(b"end", timeout=WAIT)
    expected = [f"progress-{i}".encode() for i in range(20)] + [b"end"]
    assert [live.get(timeout=WAIT) for _ in expected] == expected
    assert [durable.get(timeout=WAIT) for _ in expected] == expected
    for sub in subs:
        sub.cancel(WAIT)


def test_unacknowledged_event_is_delivered_again(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    seen: queue.Queue[bytes] = queue.Queue()
    failed_once = threading.Event()

    def handler(delivery: EventDelivery) -> None:
        seen.put(delivery.body)
        if not failed_once.is_set():
            failed_once.set()
            raise RuntimeError("store unavailable for a moment")
        delivery.ack()

    sub = broker.consume_events(handler)
    broker.publish_event(b"important", timeout=WAIT)
    assert seen.get(timeout=WAIT) == b"important"
    assert seen.get(timeout=WAIT) == b"important"
    sub.cancel(WAIT)


def test_every_watcher_sees_every_live_event(make_broker: BrokerFactory) -> None:
    one, two, worker = make_broker(), make_broker(), make_broker()
    seen_one: queue.Queue[bytes] = queue.Queue()
    seen_two: queue.Queue[bytes] = queue.Queue()
    sub_one = one.watch_events(seen_one.put)
    sub_two = two.watch_events(seen_two.put)
    durable: queue.Queue[bytes] = queue.Queue()

    def record(delivery: EventDelivery) -> None:
        durable.put(delivery.body)
        delivery.ack()

    sub_durable = one.consume_events(record)
    for i in range(5):
        worker.publish_event(f"live-{i}".encode(), timeout=WAIT)
    expected = [f"live-{i}".encode() for i in range(5)]
    assert [seen_one.get(timeout=WAIT) for _ in range(5)] == expected
    assert [seen_two.get(timeout=WAIT) for _ in range(5)] == expected
    # The live path is in addition to the durable one, not instead of it.
    assert [durable.get(timeout=WAIT) for _ in range(5)] == expected
    for sub in (sub_one, sub_two, sub_durable):
        sub.cancel(WAIT)


def test_every_watcher_hears_every_heartbeat_and_nothing_is_kept(
    make_broker: BrokerFactory,
) -> None:
    one, two, worker = make_broker(), make_broker(), make_broker()
    # Nobody watches yet: heard by nobody, kept for nobody, and no error for it.
    worker.publish_heartbeat(b"before")
    heard_one: queue.Queue[bytes] = queue.Queue()
    heard_two: queue.Queue[bytes] = queue.Queue()
    sub_one = one.watch_heartbeats(heard_one.put)
    sub_two = two.watch_heartbeats(heard_two.put)
    events: queue.Queue[bytes] = queue.Queue()
    sub_events = one.watch_events(events.put)
    for i in range(3):
        worker.publish_heartbeat(f"beat-{i}".encode())
    expected = [f"beat-{i}".encode() for i in range(3)]
    assert [heard_one.get(timeout=WAIT) for _ in range(3)] == expected
    assert [heard_two.get(timeout=WAIT) for _ in range(3)] == expected
    # Heartbeats and job events travel apart: a gateway recording events never sees a heartbeat.
    worker.publish_event(b"an event", timeout=WAIT)
    assert events.get(timeout=WAIT) == b"an event"
    assert events.empty() and heard_one.empty()
    for sub in (sub_one, sub_two, sub_events):
        sub.cancel(WAIT)


def test_unknown_queue_is_refused(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    with pytest.raises(ValueError, match="unknown queue"):
        broker.publish("nope", Message("job", b""), timeout=WAIT)


def test_broker_reports_healthy_while_connected(make_broker: BrokerFactory) -> None:
    assert make_broker().healthy()


def test_a_handed_back_delivery_comes_again_as_the_same_attempt(
    make_broker: BrokerFactory, request: pytest.FixtureRequest
) -> None:
    broker = make_broker()
    broker.publish(TRAIN_QUEUE, Message("job-back", b"x"), timeout=WAIT)
    got: queue.Queue[Delivery] = queue.Queue()

    def handler(delivery: Delivery) -> None:
        got.put(delivery)
        if got.qsize() == 1:
            raise HandBack("waiting for an outage while stopping")
        delivery.ack()

    sub = broker.consume(TRAIN_QUEUE, handler, prefetch=1)
    first, again = _take(got), _take(got, "the delivery handed back")
    sub.cancel(WAIT)
    assert again.message.job_id == "job-back"
    # RabbitMQ before 4.3 counts every message returned to a quorum queue, a nack included.
    counted = request.node.callspec.params["make_broker"] == "rabbitmq"
    assert (first.attempt, again.attempt) in ([(1, 1), (1, 2)] if counted else [(1, 1)])
