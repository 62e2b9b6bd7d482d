"""The three kinds of RabbitMQ subscription, and the deliveries they hand to handlers.

* work (``train``, ``predict``): a quorum queue; ``attempt`` is one more than the queue's
  ``x-delivery-count``. A delivery the handler leaves unsettled is rejected with requeue, which
  RabbitMQ counts as a failed delivery (as it counts a consumer that died).
* events: the durable, single-active-consumer queue. One thread keeps the order; an event the
  handler does not acknowledge sends the channel's deliveries back to their places, so the next
  one handled is that event again.
* watch: a private exclusive queue bound to the events exchange, acknowledged on receipt.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from brokers._rabbitmq_consumer import Consumers, Item, Subscriber
from brokers._rabbitmq_link import backoff
from brokers._rabbitmq_topology import Topology
from brokers.base import (
    Delivery,
    DeliveryHandler,
    EventDelivery,
    EventHandler,
    Message,
    WatchHandler,
)
from brokers.errors import BrokerClosed, BrokerUnavailable

__all__ = ["EventSubscriber", "WatchSubscriber", "WorkSubscriber", "decode"]

log = logging.getLogger("brokers.rabbitmq")

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


class _WorkDelivery(Delivery):
    def __init__(self, subscriber: WorkSubscriber, item: Item) -> None:
        self.message = decode(item.properties, item.body)
        self.attempt = int((item.properties.headers or {}).get("x-delivery-count", 0)) + 1
        self.settled = False
        self._subscriber = subscriber
        self._item = item

    def ack(self) -> None:
        if self.settled:
            return
        self.settled = True
        tag = self._item.tag
        if not self._subscriber.settle(self._item, lambda channel: channel.basic_ack(tag)):
            raise BrokerUnavailable(_LOST)

    def dead_letter(self, reason: str) -> None:
        if self.settled:
            return
        # Copy the message to the dead-letter queue only while its delivery is still ours, so a
        # lost connection does not leave it both there and back in the work queue.
        if not self._subscriber.owns(self._item):
            raise BrokerUnavailable(_LOST)
        self._subscriber.dead_letter(self._item, reason)
        self.ack()
        log.warning(
            "dead-lettered job %s from %s: %s",
            self.message.job_id,
            self._subscriber.queue_name,
            reason,
        )


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
        super().__init__(owner, topology, f"rabbitmq-{queue}", prefetch, threads=prefetch)
        self.queue_name = topology.work_queue(queue)
        self.dead_letter = dead_letter
        self._handler = handler
        self._arguments = {"x-consumer-timeout": consumer_timeout_ms}

    def _consume(self, channel: Any) -> str:
        tag: str = channel.basic_consume(
            self.queue_name, self.on_message, arguments=self._arguments
        )
        return tag

    def owns(self, item: Item) -> bool:
        """Whether ``item``'s channel is still open (read without the IO thread: a hint)."""
        return item.epoch == self.epoch

    def _process(self, item: Item) -> None:
        if item.epoch != self.epoch:
            return  # stale: RabbitMQ has put it back already
        if self.cancelled:
            tag = item.tag
            self.settle(item, lambda channel: channel.basic_nack(tag, requeue=True))
            return
        delivery = _WorkDelivery(self, item)
        try:
            self._handler(delivery)
        except Exception:
            log.exception(
                "handler failed on job %s; it will be delivered again", delivery.message.job_id
            )
        if not delivery.settled:
            tag = item.tag
            self.settle(item, lambda channel: channel.basic_reject(tag, requeue=True))


class _EventDelivery(EventDelivery):
    def __init__(self, subscriber: EventSubscriber, item: Item) -> None:
        self.body = item.body
        self.acked = False
        self._subscriber = subscriber
        self._item = item

    def ack(self) -> None:
        if self.acked:
            return
        self.acked = True
        tag = self._item.tag
        if not self._subscriber.settle(self._item, lambda channel: channel.basic_ack(tag)):
            raise BrokerUnavailable(_LOST)


class EventSubscriber(Subscriber):
    """Hands the durable events to one handler thread, in order."""

    PREFETCH = 64

    def __init__(self, owner: Consumers, topology: Topology, handler: EventHandler) -> None:
        super().__init__(owner, topology, "rabbitmq-events", self.PREFETCH, threads=1)
        self._handler = handler
        self._queue = topology.events_queue
        self._failed_epoch = -1  # handler thread only
        self._failures = 0
        self._stopped = threading.Event()

    def _consume(self, channel: Any) -> str:
        tag: str = channel.basic_consume(self._queue, self.on_message)
        return tag

    def _process(self, item: Item) -> None:
        # After a failure, the rest of that channel's deliveries are on their way back to the
        # queue, behind the failed event: handling them now would break the order.
        if self.cancelled or item.epoch != self.epoch or item.epoch <= self._failed_epoch:
            return
        delivery = _EventDelivery(self, item)
        try:
            self._handler(delivery)
        except Exception:
            log.exception("event handler failed; the event will be delivered again")
        if delivery.acked:
            self._failures = 0
            return
        self._failed_epoch = item.epoch
        # A pause before trying again, growing while the handler keeps failing (its store is
        # down, say); cancel() cuts it short.
        self._stopped.wait(backoff(self._failures))
        self._failures += 1
        epoch = item.epoch
        with contextlib.suppress(BrokerClosed):
            self._io.call(lambda: self.restart(epoch))

    def cancel(self, timeout: float | None = None) -> None:
        self._stopped.set()
        super().cancel(timeout)


class WatchSubscriber(Subscriber):
    """Every event published while it runs, through a queue of its own."""

    def __init__(self, owner: Consumers, topology: Topology, handler: WatchHandler) -> None:
        super().__init__(owner, topology, "rabbitmq-watch", prefetch=0, threads=1)
        self._handler = handler
        self._exchange = topology.events_exchange
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

    def _process(self, item: Item) -> None:
        if self.cancelled:
            return
        try:
            self._handler(item.body)
        except Exception:
            log.exception("event watcher failed")
