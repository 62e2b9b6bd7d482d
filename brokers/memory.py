"""The in-memory broker: a real broker for one process, the embedded default and the test double.

It keeps the contract's semantics, not just its signatures: unsettled deliveries come back with a
higher attempt count, events wait for a consumer, watchers each get every live event. Nothing
survives the process, which is why it serves ``mlgate serve`` and tests, not a fleet.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from brokers._delivery import EventAck, HandlerPool, WorkDelivery, watch_pool
from brokers._requests import Outstanding, ServedRequest, request_pool
from brokers.base import (
    PRIOR_ATTEMPTS_HEADER,
    QUEUES,
    REQUEST_QUEUES,
    Broker,
    BrokerStats,
    DeliveryHandler,
    EventHandler,
    IncomingRequest,
    Message,
    QueueStats,
    Reply,
    ReplyHandler,
    Request,
    Requester,
    RequestHandler,
    Subscription,
    WatchHandler,
)
from brokers.errors import BrokerClosed

__all__ = ["MemoryBroker"]


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


class _Consumer(Subscription, Generic[T]):
    """A handler pool fed from one of the broker's queues. The feeding thread takes an item only
    when a handler thread is free, so other consumers of the queue get the rest."""

    def __init__(
        self,
        source: _Queue[T],
        pool: HandlerPool[T, Any],
        on_cancel: Callable[[], None] | None = None,
    ) -> None:
        self._source = source
        self._pool = pool
        self._on_cancel = on_cancel
        self._feeder = threading.Thread(target=self._feed, name=f"{pool.name}-feed", daemon=True)

    def start(self) -> _Consumer[T]:
        self._pool.start()
        self._feeder.start()
        return self

    @property
    def cancelled(self) -> bool:
        return self._pool.stopping.is_set()

    def _feed(self) -> None:
        while self._pool.wait_for_room() > 0:
            item = self._source.get(self._pool.stopping)
            if item is None:
                return
            self._pool.put(item)  # handed back at once if the pool stopped meanwhile

    def cancel(self, timeout: float | None = None) -> None:
        if not self._pool.stop():
            return
        if self._on_cancel is not None:
            self._on_cancel()
        deadline = None if timeout is None else time.monotonic() + timeout
        self._source.wake_all()
        self._feeder.join(timeout)
        # A handler still running puts its item back itself when it returns.
        self._pool.join(deadline)


class _MemoryDelivery(WorkDelivery):
    def __init__(self, broker: MemoryBroker, queue: str, message: Message, attempt: int) -> None:
        super().__init__(message, attempt, queue)
        self._broker = broker
        self._queue = queue

    def _ack(self) -> None:
        pass

    def _dead_letter(self, reason: str) -> None:
        with self._broker._lock:
            self._broker._dead[self._queue].append(self.message)


class _MemoryEventAck(EventAck):
    def _ack(self) -> None:
        pass


#: A queued job: its message, its deliveries so far, and when it was first queued (monotonic
#: seconds; a redelivery keeps it, as the other brokers keep a message's publish time).
_Job = tuple[Message, int, float]


class _Jobs:
    """The transport of one work queue: items are ``_Job``."""

    def __init__(self, broker: MemoryBroker, queue: str) -> None:
        self._broker = broker
        self._queue = queue
        self.source = broker._queue(queue)

    def open(self, item: _Job) -> _MemoryDelivery:
        message, previous, _queued = item
        return _MemoryDelivery(self._broker, self._queue, message, previous + 1)

    def retry(self, item: _Job) -> None:
        message, previous, queued = item
        self.source.put((message, previous + 1, queued), front=True)

    def release(self, item: _Job) -> None:
        self.source.put(item, front=True)


class _Events:
    """The transport of the durable events: an event not acknowledged goes back to the front."""

    def __init__(self, source: _Queue[bytes]) -> None:
        self.source = source

    def open(self, body: bytes) -> _MemoryEventAck:
        return _MemoryEventAck(body)

    def retry(self, body: bytes) -> None:
        self.source.put(body, front=True)

    def release(self, body: bytes) -> None:
        self.source.put(body, front=True)


class _MemoryRequester(Requester):
    """Replies come back as calls, on the serving thread."""

    def __init__(self, broker: MemoryBroker, on_reply: ReplyHandler) -> None:
        self._broker = broker
        self.outstanding = Outstanding(on_reply)
        self.closed = False

    def send(self, queue: str, request: Request) -> None:
        self._broker._check_open()
        if self.closed:
            raise BrokerClosed("the requester is closed")
        self.outstanding.add(request.correlation_id, request.deadline)
        self._broker._request_queue(queue).put((request, self))

    def close(self) -> None:
        self.closed = True


_RequestItem = tuple[Request, _MemoryRequester]


class _Requests:
    """The transport of a request queue: a request is answered, dropped or handed back."""

    def __init__(self, source: _Queue[_RequestItem]) -> None:
        self.source = source

    def open(self, item: _RequestItem) -> ServedRequest:
        request, requester = item

        def answer(body: bytes) -> None:
            if not requester.closed:
                requester.outstanding.reply(Reply(request.correlation_id, body))

        return ServedRequest(IncomingRequest(request), answer, lambda: None)

    def retry(self, item: _RequestItem) -> None:
        pass  # never asked: a served request is always settled

    def release(self, item: _RequestItem) -> None:
        self.source.put(item, front=True)


class MemoryBroker(Broker):
    """Queues, events and dead letters held in this process."""

    name = "memory"
    # Its queues die with the process: the job store is then the only record of queued jobs.
    keeps_jobs = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._queues: dict[str, _Queue[_Job]] = {q: _Queue() for q in QUEUES}
        self._dead: dict[str, list[Message]] = {q: [] for q in QUEUES}
        self._events: _Queue[bytes] = _Queue()
        self._watchers: list[_Queue[bytes]] = []
        self._heartbeat_watchers: list[_Queue[bytes]] = []
        self._subscriptions: list[Subscription] = []
        self._consumers: dict[str, list[_Consumer[_Job]]] = {q: [] for q in QUEUES}
        self._requests: dict[str, _Queue[_RequestItem]] = {q: _Queue() for q in REQUEST_QUEUES}

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

    def _queue(self, name: str) -> _Queue[_Job]:
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
        self._queue(queue).put((message, _prior_attempts(message), time.monotonic()))

    def consume(self, queue: str, handler: DeliveryHandler, *, prefetch: int) -> Subscription:
        self._check_open()
        jobs = _Jobs(self, queue)
        pool = HandlerPool(f"memory-{queue}", max(1, prefetch), handler, jobs)
        consumer = _Consumer(jobs.source, pool).start()
        with self._lock:
            self._consumers[queue].append(consumer)
        return self._track(consumer)

    def _request_queue(self, name: str) -> _Queue[_RequestItem]:
        try:
            return self._requests[name]
        except KeyError:
            raise ValueError(f"unknown request queue {name!r}; they are {REQUEST_QUEUES}") from None

    def requester(self, on_reply: ReplyHandler) -> Requester:
        self._check_open()
        return _MemoryRequester(self, on_reply)

    def serve_requests(
        self, queue: str, handler: RequestHandler, *, concurrency: int
    ) -> Subscription:
        self._check_open()
        requests = _Requests(self._request_queue(queue))
        pool = request_pool(f"memory-{queue}", concurrency, handler, requests)
        return self._track(_Consumer(requests.source, pool).start())

    def publish_event(self, body: bytes, *, timeout: float, confirm: bool = True) -> None:
        self._check_open()
        self._events.put(body)
        with self._lock:
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher.put(body)

    def consume_events(self, handler: EventHandler) -> Subscription:
        self._check_open()
        events = _Events(self._events)
        # One thread keeps each job's events in publish order.
        pool = HandlerPool("memory-events", 1, handler, events, pause=True)
        return self._track(_Consumer(self._events, pool).start())

    def watch_events(self, handler: WatchHandler) -> Subscription:
        return self._watch(self._watchers, handler, "memory-watch")

    def publish_heartbeat(self, body: bytes) -> None:
        self._check_open()
        with self._lock:
            watchers = list(self._heartbeat_watchers)
        for watcher in watchers:
            watcher.put(body)

    def watch_heartbeats(self, handler: WatchHandler) -> Subscription:
        return self._watch(self._heartbeat_watchers, handler, "memory-heartbeats")

    def _watch(
        self, watchers: list[_Queue[bytes]], handler: WatchHandler, name: str
    ) -> Subscription:
        """A feed of its own among ``watchers``, which every publication of that kind reaches."""
        self._check_open()
        feed: _Queue[bytes] = _Queue()
        with self._lock:
            watchers.append(feed)

        def unwatch() -> None:
            with self._lock:
                if feed in watchers:
                    watchers.remove(feed)

        pool = watch_pool(name, handler, lambda body: body)
        return self._track(_Consumer(feed, pool, on_cancel=unwatch).start())

    def dead_letters(self, queue: str, *, limit: int = 100) -> list[Message]:
        self._queue(queue)
        with self._lock:
            return list(self._dead[queue][:limit])

    def stats(self) -> BrokerStats:
        with self._lock:
            consumers = {
                q: sum(not r.cancelled for r in runners) for q, runners in self._consumers.items()
            }
        now = time.monotonic()
        found = []
        for queue in QUEUES:
            waiting = self._queues[queue].snapshot()
            oldest = max((now - queued for _m, _n, queued in waiting), default=0.0)
            found.append(QueueStats(queue, len(waiting), consumers[queue], oldest))
        return BrokerStats(tuple(found))
