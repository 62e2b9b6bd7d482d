"""The three kinds of RabbitMQ subscription, and the deliveries they hand to handlers: the
transports of their handler pools (``brokers._delivery`` runs the handlers).

* work (``train``, ``predict``): a quorum queue; ``attempt`` is one more than the queue's
  ``x-delivery-count``. A delivery the handler leaves unsettled is rejected with requeue, which
  RabbitMQ counts as a failed delivery (as it counts a consumer that died).
* events: the durable, single-active-consumer queue. One thread keeps the order; an event the
  handler does not acknowledge sends the channel's deliveries back to their places (after the
  handler pool's pause), so the next one handled is that event again.
* watch: a private exclusive queue bound to the events exchange (or the heartbeats exchange),
  acknowledged on receipt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from brokers._delivery import EventAck, HandlerPool, WorkDelivery, watch_pool
from brokers._rabbitmq_consumer import Consumers, Item, Subscriber
from brokers._rabbitmq_topology import Topology
from brokers.base import DeliveryHandler, EventHandler, Message, WatchHandler
from brokers.errors import BrokerClosed, BrokerUnavailable

__all__ = ["EventSubscriber", "WatchSubscriber", "WorkSubscriber", "decode"]

DeadLetter = Callable[[Item, str], None]

_LOST = "the connection to RabbitMQ was lost; the message will be delivered again"


def decode(properties: Any, body: bytes) -> Message:
    """A Message from AMQP properties; headers starting ``x-`` belong to RabbitMQ and mlgate."""
    headers = tuple(
        (key, value.decode() if isinstance(value, bytes) else str(value))
        for key, value in (properties.headers or {}).items()
        if not key.startswith("x-")
    )
    return Message(properties.message_id or "", body, headers)


def _ack(subscriber: Subscriber, item: Item) -> None:
    tag = item.tag
    if not subscriber.settle(item, lambda channel: channel.basic_ack(tag)):
        raise BrokerUnavailable(_LOST)


class _RabbitDelivery(WorkDelivery):
    def __init__(self, subscriber: WorkSubscriber, item: Item) -> None:
        attempt = int((item.properties.headers or {}).get("x-delivery-count", 0)) + 1
        super().__init__(decode(item.properties, item.body), attempt, subscriber.queue_name)
        self._subscriber = subscriber
        self._item = item

    def _ack(self) -> None:
        _ack(self._subscriber, self._item)

    def _dead_letter(self, reason: str) -> None:
        # Copy the message to the dead-letter queue only while its delivery is still ours, so a
        # lost connection does not leave it both there and back in the work queue.
        if not self._subscriber.owns(self._item):
            raise BrokerUnavailable(_LOST)
        self._subscriber.dead_letter(self._item, reason)
        _ack(self._subscriber, self._item)


class WorkSubscriber(Subscriber):
    """Runs a handler for each job of a work queue, ``prefetch`` at a time."""

    def __init__(
        self,
        owner: Consumers,
        topology: Topology,
        queue: str,
        handler: DeliveryHandler,
        prefetch: int,
        dead_letter: DeadLetter,
        consumer_timeout_ms: int,
    ) -> None:
        super().__init__(owner, topology, f"rabbitmq-{queue}", prefetch)
        self.pool = HandlerPool(self.name, prefetch, handler, self, on_room=self.room_freed)
        self.queue_name = topology.work_queue(queue)
        self.dead_letter = dead_letter
        self._arguments = {"x-consumer-timeout": consumer_timeout_ms}

    def _consume(self, channel: Any) -> str:
        tag: str = channel.basic_consume(
            self.queue_name, self.on_message, arguments=self._arguments
        )
        return tag

    def owns(self, item: Item) -> bool:
        """Whether ``item``'s channel is still open (read without the IO thread: a hint)."""
        return item.epoch == self.epoch

    # --- the transport of the handler pool ---

    def open(self, item: Item) -> _RabbitDelivery | None:
        return _RabbitDelivery(self, item) if self.owns(item) else None

    def retry(self, item: Item) -> None:
        tag = item.tag
        self.settle(item, lambda channel: channel.basic_reject(tag, requeue=True))

    def release(self, item: Item) -> None:
        tag = item.tag
        self.settle(item, lambda channel: channel.basic_nack(tag, requeue=True))


class _RabbitEventAck(EventAck):
    def __init__(self, subscriber: EventSubscriber, item: Item) -> None:
        super().__init__(item.body)
        self._subscriber = subscriber
        self._item = item

    def _ack(self) -> None:
        _ack(self._subscriber, self._item)


class EventSubscriber(Subscriber):
    """Hands the durable events to one handler thread, in order."""

    PREFETCH = 64

    def __init__(self, owner: Consumers, topology: Topology, handler: EventHandler) -> None:
        super().__init__(owner, topology, "rabbitmq-events", self.PREFETCH)
        self.pool = HandlerPool(self.name, 1, handler, self, pause=True, on_room=self.room_freed)
        self._queue = topology.events_queue
        self._failed_epoch = -1  # handler thread only

    def _consume(self, channel: Any) -> str:
        tag: str = channel.basic_consume(self._queue, self.on_message)
        return tag

    # --- the transport of the handler pool ---

    def open(self, item: Item) -> _RabbitEventAck | None:
        # After a failure, the rest of that channel's deliveries are on their way back to the
        # queue, behind the failed event: handling them now would break the order.
        if item.epoch != self.epoch or item.epoch <= self._failed_epoch:
            return None
        return _RabbitEventAck(self, item)

    def retry(self, item: Item) -> None:
        # A new channel sends every unacknowledged event back to its place, this one first.
        self._failed_epoch = item.epoch
        epoch = item.epoch
        with contextlib.suppress(BrokerClosed):
            self._io.call(lambda: self.restart(epoch))

    def release(self, item: Item) -> None:
        pass  # unacknowledged, it goes back to its place when the channel closes


class WatchSubscriber(Subscriber):
    """Every message published to ``exchange`` (default: the events') while it runs, through
    a queue of its own."""

    def __init__(
        self,
        owner: Consumers,
        topology: Topology,
        handler: WatchHandler,
        exchange: str | None = None,
        name: str = "rabbitmq-watch",
    ) -> None:
        super().__init__(owner, topology, name, prefetch=0)
        self.pool = watch_pool(self.name, handler, lambda item: item.body)
        self._exchange = exchange or topology.events_exchange
        self._queue = ""

    def _setup(self, channel: Any) -> None:
        # A new private queue for each channel: events sent while disconnected are not kept.
        def declared(frame: Any) -> None:
            queue = frame.method.queue
            channel.queue_bind(queue, self._exchange, callback=lambda _f: bound(queue))

        def bound(queue: str) -> None:
            self._queue = queue
            self.ready(channel)

        channel.queue_declare("", exclusive=True, auto_delete=True, callback=declared)

    def _consume(self, channel: Any) -> str:
        tag: str = channel.basic_consume(self._queue, self.on_message, auto_ack=True)
        return tag
