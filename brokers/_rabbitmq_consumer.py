"""Subscriptions over the broker's consumer connection.

Each subscription has a channel of its own (so its own prefetch) and a handler pool of its own
(``brokers._delivery``) whose threads run the handler; the IO thread only moves deliveries and
acknowledgements. When the connection or the
channel is lost, RabbitMQ puts every unacknowledged delivery back in the queue; the subscription
opens a new channel (declaring the topology again) and consumes again. Deliveries taken on a lost
channel are "stale": they are not started, and acknowledging one raises ``BrokerUnavailable``
because the broker has already given the message back to the queue.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pika

from brokers._backoff import backoff
from brokers._delivery import HandlerPool
from brokers._rabbitmq_link import AmqpLink, IOThread
from brokers._rabbitmq_topology import Topology
from brokers.base import Subscription
from brokers.errors import BrokerClosed, BrokerUnavailable

__all__ = ["Attached", "Consumers", "Item", "Subscriber"]

log = logging.getLogger("brokers.rabbitmq")

_SETTLE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Item:
    """One delivery as handed from the IO thread to a handler thread."""

    epoch: int
    tag: int
    properties: Any
    body: bytes
    #: RabbitMQ gave this message to a consumer before (which did not acknowledge it).
    redelivered: bool = False


class Attached(Protocol):
    """Whatever rides on the consumer connection: told each time it comes up and goes down."""

    def attach(self, connection: Any) -> None: ...

    def detach(self) -> None: ...


class Consumers:
    """The consumer connection and the subscriptions riding on it."""

    def __init__(self, io: IOThread, parameters: pika.ConnectionParameters) -> None:
        self.io = io
        self.link = AmqpLink(io, parameters, "consumer", self._on_open, self._on_lost)
        self._subscribers: set[Attached] = set()  # IO thread only

    def add(self, subscriber: Attached) -> None:
        def add() -> None:
            self._subscribers.add(subscriber)
            if self.link.connection is not None:
                subscriber.attach(self.link.connection)

        self.io.call(add)

    def discard(self, subscriber: Attached) -> None:
        """From the IO thread: forget a cancelled subscription."""
        self._subscribers.discard(subscriber)

    def _on_open(self, connection: Any) -> None:
        for subscriber in self._subscribers:
            subscriber.attach(connection)

    def _on_lost(self) -> None:
        for subscriber in self._subscribers:
            subscriber.detach()


class Subscriber(Subscription):
    """A running consumer of one queue: its channel, its prefetch and its handler pool.

    Subclasses say what to consume (``_consume``) and make the ``pool`` that runs the handler,
    usually with themselves as its transport.
    """

    pool: HandlerPool[Item, Any]

    def __init__(self, owner: Consumers, topology: Topology, name: str, prefetch: int) -> None:
        self.name = name
        self._owner = owner
        self._io = owner.io
        self._topology = topology
        self._prefetch = prefetch
        self._lock = threading.Lock()
        self._waiting_for_room = False  # under _lock
        #: Set once the subscription first consumes.
        self.consuming = threading.Event()
        self._cancel_ok = threading.Event()
        # IO-thread state. ``epoch`` changes with every channel, so a delivery knows its own.
        self.epoch = 0
        self._connection: Any = None
        self._channel: Any = None
        self._prepared: Any = None  # the channel once set up to consume
        self._consumer_tag: str | None = None
        self._attempt = 0
        self._retry: object = None
        self._restarting = False

    @property
    def cancelled(self) -> bool:
        return self.pool.stopping.is_set()

    def begin(self) -> None:
        self.pool.start()
        self._owner.add(self)

    # --- the IO thread ---

    def attach(self, connection: Any) -> None:
        """Open a channel on ``connection`` and consume (unless a channel is already open)."""
        self._retry = None
        if self.cancelled or self._channel is not None or not connection.is_open:
            return
        self._connection = connection
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_channel_open(self, channel: Any) -> None:
        if (
            self.cancelled
            or self._channel is not None
            or channel.connection is not self._connection
        ):
            channel.close()
            return
        self.epoch += 1
        self._channel = channel
        self._consumer_tag = None
        channel.add_on_close_callback(self._on_channel_closed)
        # RabbitMQ cancels a consumer whose queue was deleted: start over, declaring it again.
        channel.add_on_cancel_callback(lambda _frame: self._close_channel(channel))
        self._topology.declare(channel, then=lambda: self._prepare(channel))

    def _prepare(self, channel: Any) -> None:
        if channel is not self._channel:
            return
        channel.basic_qos(
            prefetch_count=self._prefetch, callback=lambda _frame: self._setup(channel)
        )

    def _setup(self, channel: Any) -> None:
        """Declare whatever is private to this subscription, then call ``ready(channel)``."""
        self.ready(channel)

    def ready(self, channel: Any) -> None:
        if channel is self._channel:
            self._prepared = channel
            self.consume_when_free()

    def consume_when_free(self) -> None:
        # After a reconnection, handlers from the lost channel may still be running: take new
        # deliveries only once one of them has finished, so that a worker with one training slot
        # does not sit on a second job for hours.
        channel = self._channel
        if channel is None or channel is not self._prepared:
            return
        if self._consumer_tag is not None or self.cancelled:
            return
        with self._lock:
            self._waiting_for_room = self._prefetch > 0 and self.pool.busy >= self._prefetch
            if self._waiting_for_room:
                return
        self._consumer_tag = self._consume(channel)
        self._attempt = 0
        self.consuming.set()

    def _consume(self, channel: Any) -> str:
        raise NotImplementedError

    def on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        if channel is not self._channel:
            return
        self.pool.put(
            Item(self.epoch, method.delivery_tag, properties, body, bool(method.redelivered))
        )

    def detach(self) -> None:
        """The channel is gone, and with it every delivery taken on it: they are back in the
        queue."""
        self._cancel_ok.set()
        self._channel = None
        self._consumer_tag = None
        self.epoch += 1
        if self._retry is not None:
            self._io.cancel_later(self._retry)
            self._retry = None

    def _on_channel_closed(self, channel: Any, reason: BaseException) -> None:
        if channel is not self._channel:
            return
        self.detach()
        connection = self._connection
        if self.cancelled or connection is None or not connection.is_open:
            return
        if self._restarting:
            self._restarting = False
            self.attach(connection)
            return
        log.warning("%s: RabbitMQ closed the channel (%s); opening another", self.name, reason)
        self._retry = self._io.call_later(backoff(self._attempt), lambda: self.attach(connection))
        self._attempt += 1

    def _close_channel(self, channel: Any) -> None:
        if channel is self._channel and channel.is_open:
            channel.close()

    def restart(self, epoch: int) -> None:
        """Close the channel of ``epoch`` (if still current) and open another at once: every
        unacknowledged delivery goes back to its place in the queue."""
        if epoch == self.epoch and self._channel is not None and self._channel.is_open:
            self._restarting = True
            self._channel.close()

    def settle_now(self, item: Item, settle: Callable[[Any], None]) -> bool:
        """On the IO thread: settle ``item`` on its channel; False if that channel is gone."""
        channel = self._channel
        if item.epoch != self.epoch or channel is None or not channel.is_open:
            return False
        settle(channel)
        return True

    # --- handler threads ---

    def settle(self, item: Item, settle: Callable[[Any], None]) -> bool:
        try:
            return self._io.run(lambda: self.settle_now(item, settle), _SETTLE_TIMEOUT)
        except (BrokerClosed, BrokerUnavailable):
            return False

    def room_freed(self) -> None:
        """A handler finished: consume again if the channel was waiting for room."""
        with self._lock:
            wake = self._waiting_for_room
        if wake:
            with contextlib.suppress(BrokerClosed):
                self._io.call(self.consume_when_free)

    # --- any thread ---

    def cancel(self, timeout: float | None = None) -> None:
        if not self.pool.stop():
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with contextlib.suppress(BrokerClosed, BrokerUnavailable):
            # Until RabbitMQ confirms the cancel, deliveries may still arrive: they are handed
            # back untouched (a nack, which RabbitMQ 4.3+ does not count as a failed attempt).
            if self._io.run(self._stop_consuming, _SETTLE_TIMEOUT):
                self._cancel_ok.wait(_SETTLE_TIMEOUT)
        self.pool.join(deadline)
        # Whatever is still unsettled (handlers that outlived ``timeout``) goes back now.
        with contextlib.suppress(BrokerClosed, BrokerUnavailable):
            self._io.run(self._forget, _SETTLE_TIMEOUT)

    def _stop_consuming(self) -> bool:
        channel = self._channel
        if channel is None or not channel.is_open or self._consumer_tag is None:
            return False
        self._cancel_ok.clear()
        channel.basic_cancel(self._consumer_tag, callback=lambda _frame: self._cancel_ok.set())
        return True

    def _forget(self) -> None:
        self._owner.discard(self)
        channel = self._channel
        self.detach()
        if channel is not None and channel.is_open:
            channel.close()
