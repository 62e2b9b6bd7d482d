"""The in-memory broker: a real broker for one process, the embedded default and the test double.

It keeps the contract's semantics, not just its signatures: unsettled deliveries come back with a
higher attempt count, events wait for a consumer, watchers each get every live event. Nothing
survives the process, which is why it serves ``mlgate serve`` and tests, not a fleet.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from brokers.base import (
    QUEUES,
    Broker,
    BrokerStats,
    Delivery,
    DeliveryHandler,
    EventDelivery,
    EventHandler,
    Message,
    QueueStats,
    Subscription,
    WatchHandler,
)
from brokers.errors import BrokerClosed

__all__ = ["PRIOR_ATTEMPTS_HEADER", "MemoryBroker"]

log = logging.getLogger(__name__)

#: Read on publish by this broker only: how many deliveries the job already had in an earlier
#: process. Its queues die with the process, so an embedded restart that requeues a job from the
#: job store says where counting stopped, and max_attempts still applies across restarts.
PRIOR_ATTEMPTS_HEADER = "prior-attempts"


def _prior_attempts(message: Message) -> int:
    value = dict(message.headers).get(PRIOR_ATTEMPTS_HEADER, "0")
    return int(value) if value.isdigit() else 0


T = TypeVar("T")


class _Queue(Generic[T]):
    """A FIFO whose readers block on a condition, never poll."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._cond = threading.Condition()

    def put(self, item: T, *, front: bool = False) -> None:
        with self._cond:
            if front:
                self._items.appendleft(item)
            else:
                self._items.append(item)
            self._cond.notify()

    def get(self, stopped: threading.Event) -> T | None:
        with self._cond:
            while not self._items:
                if stopped.is_set():
                    return None
                self._cond.wait()
            return self._items.popleft()

    def wake_all(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def snapshot(self) -> list[T]:
        with self._cond:
            return list(self._items)


class _Runner(Subscription, Generic[T]):
    """``threads`` threads that take items from a queue and run ``work`` on each."""

    def __init__(
        self, name: str, queue: _Queue[T], work: Callable[[T], None], threads: int
    ) -> None:
        self._queue = queue
        self._work = work
        self._stopped = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while (item := self._queue.get(self._stopped)) is not None:
            if self._stopped.is_set():
                self._queue.put(item, front=True)
                return
            self._work(item)

    @property
    def cancelled(self) -> bool:
        return self._stopped.is_set()

    def cancel(self, timeout: float | None = None) -> None:
        self._stopped.set()
        self._queue.wake_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)


class _MemoryDelivery(Delivery):
    def __init__(self, broker: MemoryBroker, queue: str, message: Message, attempt: int) -> None:
        self.message = message
        self.attempt = attempt
        self._broker = broker
        self._queue = queue
        self.settled = False

    def ack(self) -> None:
        self.settled = True

    def dead_letter(self, reason: str) -> None:
        self.settled = True
        with self._broker._lock:
            self._broker._dead[self._queue].append(self.message)
        log.warning("dead-lettered job %s from %s: %s", self.message.job_id, self._queue, reason)


class _MemoryEventDelivery(EventDelivery):
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.settled = False

    def ack(self) -> None:
        self.settled = True


class MemoryBroker(Broker):
    """Queues, events and dead letters held in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._queues: dict[str, _Queue[tuple[Message, int]]] = {q: _Queue() for q in QUEUES}
        self._dead: dict[str, list[Message]] = {q: [] for q in QUEUES}
        self._events: _Queue[bytes] = _Queue()
        self._watchers: list[_Queue[bytes]] = []
        self._subscriptions: list[Subscription] = []
        self._consumers: dict[str, list[_Runner[tuple[Message, int]]]] = {q: [] for q in QUEUES}

    def start(self) -> None:
        self._check_open()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            subscription.cancel(timeout=5)

    def healthy(self) -> bool:
        return not self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosed("the broker is closed")

    def _queue(self, name: str) -> _Queue[tuple[Message, int]]:
        try:
            return self._queues[name]
        except KeyError:
            raise ValueError(f"unknown queue {name!r}; queues are {QUEUES}") from None

    def _track(self, subscription: Subscription) -> Subscription:
        with self._lock:
            self._subscriptions.append(subscription)
        return subscription

    def publish(self, queue: str, message: Message, *, timeout: float) -> None:
        self._check_open()
        self._queue(queue).put((message, _prior_attempts(message)))

    def consume(self, queue: str, handler: DeliveryHandler, *, prefetch: int) -> Subscription:
        self._check_open()
        source = self._queue(queue)

        def work(item: tuple[Message, int]) -> None:
            message, previous = item
            delivery = _MemoryDelivery(self, queue, message, previous + 1)
            try:
                handler(delivery)
            except Exception:
                log.exception("handler failed on job %s; it will be redelivered", message.job_id)
            if not delivery.settled:
                source.put((message, delivery.attempt), front=True)

        runner = _Runner(f"memory-{queue}", source, work, max(1, prefetch))
        with self._lock:
            self._consumers[queue].append(runner)
        return self._track(runner)

    def publish_event(self, body: bytes, *, timeout: float) -> None:
        self._check_open()
        self._events.put(body)
        with self._lock:
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher.put(body)

    def consume_events(self, handler: EventHandler) -> Subscription:
        self._check_open()

        def work(body: bytes) -> None:
            delivery = _MemoryEventDelivery(body)
            try:
                handler(delivery)
            except Exception:
                log.exception("event handler failed; the event will be redelivered")
            if not delivery.settled:
                self._events.put(body, front=True)

        # One thread keeps each job's events in publish order.
        return self._track(_Runner("memory-events", self._events, work, 1))

    def watch_events(self, handler: WatchHandler) -> Subscription:
        self._check_open()
        feed: _Queue[bytes] = _Queue()
        with self._lock:
            self._watchers.append(feed)

        def work(body: bytes) -> None:
            try:
                handler(body)
            except Exception:
                log.exception("event watcher failed")

        runner = _Runner("memory-watch", feed, work, 1)
        broker = self

        class _Watch(Subscription):
            def cancel(self, timeout: float | None = None) -> None:
                with broker._lock:
                    if feed in broker._watchers:
                        broker._watchers.remove(feed)
                runner.cancel(timeout)

        return self._track(_Watch())

    def dead_letters(self, queue: str, *, limit: int = 100) -> list[Message]:
        self._queue(queue)
        with self._lock:
            return list(self._dead[queue][:limit])

    def stats(self) -> BrokerStats:
        with self._lock:
            consumers = {
                q: sum(not r.cancelled for r in runners) for q, runners in self._consumers.items()
            }
        return BrokerStats(
            tuple(QueueStats(q, len(self._queues[q].snapshot()), consumers[q]) for q in QUEUES)
        )
