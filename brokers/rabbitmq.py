"""The RabbitMQ broker (pika): durable quorum work queues, publisher confirms, durable events.

One broker object owns two long-lived connections, both run by one IO thread: the publisher
(confirm mode; it also declares the topology, see ``brokers._rabbitmq_topology``) and the
consumer (a channel per subscription). Handlers run on threads of their own, so a fit that takes
hours does not stop heartbeats. Either connection, when lost, comes back by itself with backoff
and jitter; what it was doing (the topology, the consumers) is set up again.

Guarantees:

* ``publish`` returns only once RabbitMQ has confirmed the message (persistent, on a durable
  queue); otherwise it raises ``PublishNotConfirmed`` or ``BrokerUnavailable`` within ``timeout``.
* A job is acknowledged only when its handler settles it. A delivery left unsettled, or whose
  consumer, channel or connection goes away, is delivered again with ``attempt`` one higher
  (RabbitMQ's own count, ``x-delivery-count``, so it survives any consumer's death).
* Dead letters are copied (with their reason in ``x-mlgate-reason``) to the work queue's
  dead-letter queue before the job is acknowledged.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from typing import Self

import pika

from brokers._rabbitmq_consumer import Consumers, Item, Subscriber
from brokers._rabbitmq_deliveries import EventSubscriber, WatchSubscriber, WorkSubscriber, decode
from brokers._rabbitmq_link import IOThread
from brokers._rabbitmq_publisher import Publisher
from brokers._rabbitmq_requests import RabbitRequester, RequestSubscriber
from brokers._rabbitmq_topology import Topology
from brokers.base import (
    QUEUES,
    REQUEST_QUEUES,
    Broker,
    BrokerStats,
    DeliveryHandler,
    EventHandler,
    Message,
    QueueStats,
    ReplyHandler,
    Requester,
    RequestHandler,
    Subscription,
    WatchHandler,
)
from brokers.errors import BrokerClosed, BrokerUnavailable
from brokers.settings import BrokerSettings
from mlgate.urls import redact_url

__all__ = ["RabbitMQBroker"]

# pika logs every socket and handshake step at INFO, and each failed connection attempt as a
# handful of ERRORs; "brokers.rabbitmq" reports what matters (a connection or channel lost, back,
# blocked, with the cause). A logging configuration that sets the "pika" logger's level wins.
if logging.getLogger("pika").level == logging.NOTSET:
    logging.getLogger("pika").setLevel(logging.CRITICAL)

_PERSISTENT = pika.DeliveryMode.Persistent
# A fit may take hours; RabbitMQ 3.12+ honours this instead of its 30-minute default.
_DEFAULT_CONSUMER_TIMEOUT = 7 * 24 * 3600.0
_DEAD_LETTER_TIMEOUT = 30.0
_CLOSE_TIMEOUT = 10.0
# A heartbeat older than this says nothing a newer one does not.
_HEARTBEAT_TTL_MS = 60_000


class RabbitMQBroker(Broker):
    """A broker on a RabbitMQ virtual host; queue and exchange names start with ``namespace``."""

    name = "rabbitmq"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "mlgate",
        connect_timeout: float = 5.0,
        consumer_timeout: float = _DEFAULT_CONSUMER_TIMEOUT,
        ca_file: str | None = None,
    ) -> None:
        self.topology = Topology(namespace)
        self._url = url
        self._connect_timeout = connect_timeout
        self._consumer_timeout_ms = int(consumer_timeout * 1000)
        self._io = IOThread(f"rabbitmq-io-{namespace}")
        self._publisher = Publisher(
            self._io, _parameters(url, namespace, "publisher", ca_file), self.topology
        )
        self._consumers = Consumers(self._io, _parameters(url, namespace, "consumer", ca_file))
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._subscriptions: list[Subscriber] = []
        self._requesters: list[RabbitRequester] = []

    @classmethod
    def from_settings(cls, settings: BrokerSettings) -> Self:
        """The broker at ``settings.url``, its queues and exchanges under ``settings.namespace``;
        an amqps:// URL trusts ``settings.ca_file`` when set."""
        return cls(settings.url, namespace=settings.namespace, ca_file=settings.ca_file or None)

    def __repr__(self) -> str:
        return f"RabbitMQBroker({redact_url(self._url)!r}, namespace={self.topology.namespace!r})"

    # --- life cycle ---

    def start(self) -> None:
        with self._lock:
            self._check_open()
            if not self._started:
                self._started = True
                self._io.start()
                self._publisher.start()
                self._consumers.link.start()
        deadline = time.monotonic() + self._connect_timeout
        for ready in (self._publisher.ready, self._consumers.link.up):
            if not ready.wait(max(0.0, deadline - time.monotonic())):
                raise BrokerUnavailable(
                    f"cannot reach RabbitMQ at {redact_url(self._url)} "
                    f"({self._publisher.link.last_error}); still trying in the background"
                )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subscriptions, self._subscriptions = self._subscriptions, []
            requesters, self._requesters = self._requesters, []
        for requester in requesters:
            requester.close()
        for subscription in subscriptions:
            subscription.cancel(timeout=5)
        if self._started:
            self._consumers.link.close(_CLOSE_TIMEOUT)
            self._publisher.close(_CLOSE_TIMEOUT)
            self._io.stop(_CLOSE_TIMEOUT)

    def healthy(self) -> bool:
        return not self._closed and self._publisher.healthy and self._consumers.link.up.is_set()

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosed("the broker is closed")

    def _check_queue(self, queue: str) -> None:
        if queue not in QUEUES:
            raise ValueError(f"unknown queue {queue!r}; queues are {QUEUES}")

    # --- work queues ---

    def publish(self, queue: str, message: Message, *, timeout: float) -> None:
        self._check_queue(queue)
        self._check_open()
        reserved = [key for key, _ in message.headers if key.startswith("x-")]
        if reserved:
            raise ValueError(f"header names starting with 'x-' are reserved: {reserved}")
        properties = pika.BasicProperties(
            delivery_mode=_PERSISTENT,
            message_id=message.job_id,
            headers=dict(message.headers),
        )
        self._publisher.publish(
            "", self.topology.work_queue(queue), message.body, properties, timeout
        )

    def consume(self, queue: str, handler: DeliveryHandler, *, prefetch: int) -> Subscription:
        self._check_queue(queue)

        def dead_letter(item: Item, reason: str) -> None:
            self._dead_letter(queue, item, reason)

        return self._track(
            WorkSubscriber(
                self._consumers,
                self.topology,
                queue,
                handler,
                max(1, prefetch),
                dead_letter,
                self._consumer_timeout_ms,
            )
        )

    def _dead_letter(self, queue: str, item: Item, reason: str) -> None:
        original = item.properties
        headers = {
            key: value
            for key, value in (original.headers or {}).items()
            if not key.startswith("x-")
        }
        headers.update(
            {
                "x-mlgate-reason": reason,
                "x-mlgate-queue": queue,
                "x-mlgate-attempts": int((original.headers or {}).get("x-delivery-count", 0)) + 1,
            }
        )
        properties = pika.BasicProperties(
            delivery_mode=_PERSISTENT,
            message_id=original.message_id,
            headers=headers,
            timestamp=int(time.time()),
        )
        self._publisher.publish(
            self.topology.dead_exchange,
            self.topology.work_queue(queue),
            item.body,
            properties,
            _DEAD_LETTER_TIMEOUT,
        )

    def dead_letters(self, queue: str, *, limit: int = 100) -> list[Message]:
        self._check_queue(queue)
        self._check_open()
        found = self._publisher.browse(
            self.topology.dead_queue(queue), limit, self._connect_timeout
        )
        return [decode(properties, body) for properties, body in found]

    def stats(self) -> BrokerStats:
        self._check_open()
        names = [self.topology.work_queue(queue) for queue in QUEUES]
        figures = self._publisher.queue_figures(names, self._connect_timeout)
        # No oldest age: only the head message says when it was published, and reading it means
        # taking it. A quorum queue counts that as a delivery (x-delivery-count goes up, and a
        # message rejected back goes to the tail), so every scrape would spend an attempt of the
        # job; RabbitMQ's own head_message_timestamp exists for classic queues only. The gateway
        # reads the age from its job store instead (server/queue_ages.py).
        return BrokerStats(
            tuple(
                QueueStats(queue, depth, consumers, oldest_seconds=None)
                for queue, (depth, consumers) in zip(QUEUES, figures, strict=True)
            )
        )

    # --- request/reply ---

    def requester(self, on_reply: ReplyHandler) -> Requester:
        with self._lock:
            self._check_open()
            requester = RabbitRequester(self._consumers, self.topology, on_reply)
            self._requesters.append(requester)
        self._consumers.add(requester)
        # Like a watcher: ready once its reply consumer runs, unless RabbitMQ is out of reach.
        if self._consumers.link.up.is_set():
            requester.ready.wait(self._connect_timeout)
        return requester

    def serve_requests(
        self, queue: str, handler: RequestHandler, *, concurrency: int
    ) -> Subscription:
        if queue not in REQUEST_QUEUES:
            raise ValueError(f"unknown request queue {queue!r}; they are {REQUEST_QUEUES}")
        return self._track(
            RequestSubscriber(self._consumers, self.topology, queue, handler, concurrency)
        )

    # --- events ---

    def publish_event(self, body: bytes, *, timeout: float, confirm: bool = True) -> None:
        self._check_open()
        properties = pika.BasicProperties(delivery_mode=_PERSISTENT)
        exchange = self.topology.events_exchange
        if confirm:
            self._publisher.publish(exchange, "", body, properties, timeout)
        else:
            self._publisher.send(exchange, "", body, properties)

    def consume_events(self, handler: EventHandler) -> Subscription:
        return self._track(EventSubscriber(self._consumers, self.topology, handler))

    def watch_events(self, handler: WatchHandler) -> Subscription:
        return self._watch(WatchSubscriber(self._consumers, self.topology, handler))

    # --- heartbeats ---

    def publish_heartbeat(self, body: bytes) -> None:
        self._check_open()
        # Transient, and gone from a watcher's queue once stale; unroutable while no gateway
        # watches, which is no news.
        properties = pika.BasicProperties(expiration=str(_HEARTBEAT_TTL_MS))
        exchange = self.topology.heartbeats_exchange
        self._publisher.send(exchange, "", body, properties, mandatory=False)

    def watch_heartbeats(self, handler: WatchHandler) -> Subscription:
        exchange = self.topology.heartbeats_exchange
        return self._watch(
            WatchSubscriber(self._consumers, self.topology, handler, exchange, "rabbitmq-workers")
        )

    def _watch(self, subscriber: WatchSubscriber) -> Subscription:
        self._track(subscriber)
        # "From now on": return once the watcher's queue is bound, unless RabbitMQ is out of
        # reach (then it watches from whenever the connection is back).
        if self._consumers.link.up.is_set():
            subscriber.consuming.wait(self._connect_timeout)
        return subscriber

    def _track(self, subscriber: Subscriber) -> Subscription:
        with self._lock:
            self._check_open()
            self._subscriptions = [s for s in self._subscriptions if not s.cancelled]
            self._subscriptions.append(subscriber)
        subscriber.begin()
        return subscriber


def _parameters(url: str, namespace: str, role: str, ca_file: str | None) -> pika.URLParameters:
    parameters = pika.URLParameters(url)
    if parameters.ssl_options is not None and ca_file:
        context = ssl.create_default_context(cafile=ca_file)
        parameters.ssl_options = pika.SSLOptions(context, server_hostname=parameters.host)
    # Shown by `rabbitmqctl list_connections client_properties` and the management UI.
    parameters.client_properties = {"connection_name": f"mlgate {namespace} {role}"}
    return parameters
