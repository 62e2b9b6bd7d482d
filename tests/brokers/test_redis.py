"""What the Redis broker adds to the contract: crash recovery by heartbeats, bounded streams,
dead-letter retention, and surviving a Redis restart or data loss."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY

from brokers._redis_keys import Keys
from brokers.base import PREDICT_QUEUE, TRAIN_QUEUE, Delivery, EventDelivery, Message
from brokers.errors import BrokerUnavailable
from brokers.redis import RedisBroker, RedisOptions
from tests.support.fresh import unique_namespace
from tests.support.redis import (
    FAST,
    PrivateRedis,
    delete_namespace,
    require_redis,
    wait_for,
)

WAIT = 30.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def namespace() -> Iterator[str]:
    url = require_redis()
    name = unique_namespace()
    yield name
    delete_namespace(url, name)


@pytest.fixture
def raw(namespace: str) -> Iterator[redis.Redis]:
    """A plain client, to look at the keys the broker keeps."""
    client = redis.Redis.from_url(require_redis())
    yield client
    client.close()


@pytest.fixture
def brokers(namespace: str) -> Iterator[list[RedisBroker]]:
    made: list[RedisBroker] = []
    yield made
    for broker in made:
        broker.close()


def _open(made: list[RedisBroker], url: str, namespace: str, options: RedisOptions) -> RedisBroker:
    broker = RedisBroker(url, namespace=namespace, options=options)
    made.append(broker)
    broker.start()
    return broker


def _acking(into: queue.Queue[Delivery]):
    def handler(delivery: Delivery) -> None:
        delivery.ack()
        into.put(delivery)

    return handler


@pytest.mark.slow
def test_entry_of_a_killed_worker_is_rerun_by_another_once_its_heartbeat_stops(
    namespace: str, brokers: list[RedisBroker], raw: redis.Redis
) -> None:
    url = require_redis()
    broker = _open(brokers, url, namespace, FAST)
    broker.publish(TRAIN_QUEUE, Message("job-killed", b"x"), timeout=WAIT)
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.support.redis", url, namespace, TRAIN_QUEUE],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "running job-killed attempt 1"
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    killed_at = time.monotonic()

    got: queue.Queue[Delivery] = queue.Queue()
    sub = broker.consume(TRAIN_QUEUE, _acking(got), prefetch=1)
    delivery = got.get(timeout=WAIT)
    recovery = time.monotonic() - killed_at
    print(
        f"\nkilled worker's job rerun after {recovery:.2f}s "
        f"(heartbeat TTL {FAST.heartbeat_ttl}s, reclaim scan every {FAST.reclaim_interval}s)"
    )
    assert delivery.message.job_id == "job-killed"
    assert delivery.attempt == 2
    # The dead worker is forgotten once it holds nothing, so consumer names do not pile up.
    stream = Keys(namespace).queue(TRAIN_QUEUE)
    wait_for(lambda: _consumers(raw, stream) == 1, WAIT, "the dead consumer being forgotten")
    sub.cancel(WAIT)


def _consumers(raw: redis.Redis, stream: str) -> int:
    return sum(1 for c in raw.xinfo_consumers(stream, "workers") if c["name"] != b"released")


@pytest.mark.slow
def test_a_live_worker_keeps_its_entry_while_a_long_job_runs(
    namespace: str, brokers: list[RedisBroker], raw: redis.Redis
) -> None:
    url = require_redis()
    options = RedisOptions(heartbeat_ttl=1.0, reclaim_interval=0.2)
    owner, other = (_open(brokers, url, namespace, options) for _ in range(2))
    started, release = threading.Event(), threading.Event()
    attempts: list[int] = []

    def long_job(delivery: Delivery) -> None:
        attempts.append(delivery.attempt)
        started.set()
        release.wait(WAIT)
        delivery.ack()

    owner_sub = owner.consume(TRAIN_QUEUE, long_job, prefetch=1)
    owner.publish(TRAIN_QUEUE, Message("job-long", b"x"), timeout=WAIT)
    assert started.wait(WAIT)
    stolen: queue.Queue[Delivery] = queue.Queue()
    other_sub = other.consume(TRAIN_QUEUE, _acking(stolen), prefetch=1)
    # Four heartbeat TTLs and twenty reclaim scans: a stalled owner would have lost it by now.
    with pytest.raises(queue.Empty):
        stolen.get(timeout=4 * options.heartbeat_ttl)
    release.set()
    owner_sub.cancel(WAIT)
    other_sub.cancel(WAIT)
    assert attempts == [1]
    assert raw.xlen(Keys(namespace).queue(TRAIN_QUEUE)) == 0


def test_settled_entries_are_deleted_and_the_event_stream_is_bounded(
    namespace: str, brokers: list[RedisBroker], raw: redis.Redis
) -> None:
    options = RedisOptions(heartbeat_ttl=2.0, reclaim_interval=0.5, event_max_len=100)
    broker = _open(brokers, require_redis(), namespace, options)
    done: queue.Queue[str] = queue.Queue()

    def handler(delivery: Delivery) -> None:
        if delivery.message.job_id.endswith("-7"):
            delivery.dead_letter("bad input")
        else:
            delivery.ack()
        done.put(delivery.message.job_id)

    for i in range(30):
        broker.publish(PREDICT_QUEUE, Message(f"job-{i}", b"x"), timeout=WAIT)
    sub = broker.consume(PREDICT_QUEUE, handler, prefetch=4)
    assert len({done.get(timeout=WAIT) for _ in range(30)}) == 30
    sub.cancel(WAIT)
    stream = Keys(namespace).queue(PREDICT_QUEUE)
    assert raw.xlen(stream) == 0, "settled entries must be deleted from the work stream"
    assert raw.xpending(stream, "workers")["pending"] == 0

    for i in range(1000):
        broker.publish_event(f"event-{i}".encode(), timeout=WAIT)
    # Trimming is approximate: Redis drops whole nodes of up to 100 entries.
    assert raw.xlen(Keys(namespace).events) <= options.event_max_len + 100


def test_dead_letters_keep_their_reason_and_expire_after_the_retention(
    namespace: str, brokers: list[RedisBroker], raw: redis.Redis
) -> None:
    options = RedisOptions(heartbeat_ttl=2.0, reclaim_interval=0.5, dead_letter_retention=1.0)
    broker = _open(brokers, require_redis(), namespace, options)
    handled: queue.Queue[str] = queue.Queue()

    def poison(delivery: Delivery) -> None:
        delivery.dead_letter(f"poison {delivery.message.job_id}")
        handled.put(delivery.message.job_id)

    sub = broker.consume(TRAIN_QUEUE, poison, prefetch=1)
    broker.publish(TRAIN_QUEUE, Message("job-old", b"old", (("k", "v"),)), timeout=WAIT)
    assert handled.get(timeout=WAIT) == "job-old"
    assert broker.dead_letters(TRAIN_QUEUE) == [Message("job-old", b"old", (("k", "v"),))]
    dead = Keys(namespace).dead(TRAIN_QUEUE)
    entries: Any = raw.xrange(dead)
    [(_id, fields)] = entries
    assert fields[b"reason"] == b"poison job-old"
    assert fields[b"attempt"] == b"1"
    assert 0 < raw.pttl(dead) <= 1000

    wait_for(lambda: broker.dead_letters(TRAIN_QUEUE) == [], 10, "the dead letter expiring")
    broker.publish(TRAIN_QUEUE, Message("job-new", b"new"), timeout=WAIT)
    assert handled.get(timeout=WAIT) == "job-new"
    assert [m.job_id for m in broker.dead_letters(TRAIN_QUEUE)] == ["job-new"]
    assert raw.xlen(dead) == 1, "expired dead letters are trimmed when a new one arrives"
    sub.cancel(WAIT)


@pytest.mark.slow
def test_everything_published_is_handled_across_a_redis_restart(tmp_path: Path) -> None:
    with PrivateRedis(tmp_path / "redis") as server:
        broker = RedisBroker(server.url, namespace="restart", options=FAST)
        broker.start()
        try:
            _publish_and_restart(server, broker)
        finally:
            broker.close()


def _publish_and_restart(server: PrivateRedis, broker: RedisBroker) -> None:
    handled: queue.Queue[str] = queue.Queue()
    in_flight, finish = threading.Event(), threading.Event()

    def handler(delivery: Delivery) -> None:
        if delivery.message.job_id == "job-in-flight":
            in_flight.set()
            finish.wait(WAIT)
        delivery.ack()
        handled.put(delivery.message.job_id)

    recorded: queue.Queue[bytes] = queue.Queue()
    watched: queue.Queue[bytes] = queue.Queue()

    def record(delivery: EventDelivery) -> None:
        delivery.ack()
        recorded.put(delivery.body)

    subs = [
        broker.consume(TRAIN_QUEUE, handler, prefetch=2),
        broker.consume_events(record),
        broker.watch_events(watched.put),
    ]
    published = ["job-in-flight"] + [f"job-before-{i}" for i in range(5)]
    for job_id in published:
        broker.publish(TRAIN_QUEUE, Message(job_id, b"x"), timeout=WAIT)
    broker.publish_event(b"event-before", timeout=WAIT)
    assert in_flight.wait(WAIT)
    assert recorded.get(timeout=WAIT) == b"event-before"
    assert watched.get(timeout=WAIT) == b"event-before"

    reconnects = REGISTRY.get_sample_value("mlgate_broker_reconnects_total") or 0.0
    server.stop()
    wait_for(lambda: not broker.healthy(), WAIT, "the broker reporting unhealthy")
    with pytest.raises(BrokerUnavailable):
        broker.publish(TRAIN_QUEUE, Message("job-refused", b"x"), timeout=0.5)
    waiting = threading.Thread(
        target=broker.publish,
        args=(TRAIN_QUEUE, Message("job-during", b"x")),
        kwargs={"timeout": WAIT},
    )
    waiting.start()
    finish.set()  # the in-flight job ends while Redis is down: its ack waits for Redis
    server.start()
    wait_for(
        lambda: (REGISTRY.get_sample_value("mlgate_broker_reconnects_total") or 0) > reconnects,
        WAIT,
        "mlgate_broker_reconnects_total to count Redis coming back",
    )
    waiting.join(WAIT)
    assert not waiting.is_alive()
    published.append("job-during")
    wait_for(broker.healthy, WAIT, "the broker reporting healthy again")

    for i in range(5):
        broker.publish(TRAIN_QUEUE, Message(f"job-after-{i}", b"x"), timeout=WAIT)
        published.append(f"job-after-{i}")
    broker.publish_event(b"event-after", timeout=WAIT)
    seen: set[str] = set()
    while not set(published) <= seen:
        seen.add(handled.get(timeout=WAIT))
    assert recorded.get(timeout=WAIT) == b"event-after"
    assert watched.get(timeout=WAIT) == b"event-after"
    for sub in subs:
        sub.cancel(WAIT)


@pytest.mark.slow
def test_streams_and_groups_lost_with_the_data_are_created_again(tmp_path: Path) -> None:
    with PrivateRedis(tmp_path / "redis") as server:
        broker = RedisBroker(server.url, namespace="lost", options=FAST)
        broker.start()
        try:
            got: queue.Queue[Delivery] = queue.Queue()
            sub = broker.consume(TRAIN_QUEUE, _acking(got), prefetch=1)
            broker.publish(TRAIN_QUEUE, Message("job-1", b"x"), timeout=WAIT)
            assert got.get(timeout=WAIT).message.job_id == "job-1"
            client = redis.Redis.from_url(server.url)
            client.flushall()  # what a Redis without persistence looks like after a restart
            client.close()
            broker.publish(TRAIN_QUEUE, Message("job-2", b"x"), timeout=WAIT)
            delivery = got.get(timeout=WAIT)
            assert (delivery.message.job_id, delivery.attempt) == ("job-2", 1)
            sub.cancel(WAIT)
        finally:
            broker.close()


@pytest.mark.slow
def test_a_worker_may_start_before_redis(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path / "redis")
    broker = RedisBroker(server.url, namespace="early", options=FAST)
    try:
        with pytest.raises(BrokerUnavailable):
            broker.start()
        assert not broker.healthy()
        got: queue.Queue[Delivery] = queue.Queue()
        sub = broker.consume(TRAIN_QUEUE, _acking(got), prefetch=1)
        with server:
            broker.publish(TRAIN_QUEUE, Message("job-late", b"x"), timeout=WAIT)
            assert got.get(timeout=WAIT).message.job_id == "job-late"
            sub.cancel(WAIT)
    finally:
        broker.close()
