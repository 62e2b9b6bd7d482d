"""The Redis Streams broker: work queues and job events as streams read through consumer groups.

* **Work queues**: one stream per queue, read by the ``workers`` group. An entry is acknowledged
  and deleted (XACK + XDEL) only when its handler settles it, so a work stream holds exactly the
  jobs not yet settled. Crash recovery works by heartbeats (see ``_redis_consumer``).
* **Dead letters**: a stream per queue holding the entry and the reason, trimmed by age and length.
* **Events**: one stream, trimmed by age and length. ``consume_events`` reads it through the
  ``gateways`` group (each event to one gateway, which acknowledges it after recording it);
  ``watch_events`` reads it with plain XREAD, so every watcher sees every new event.
* **Heartbeats**: one short stream, read with plain XREAD by every gateway watching it.

Delivery is at least once: a publish retried after a lost reply, or a job whose worker died after
recording its outcome, is delivered again, which the workers and the job store already tolerate.
Durability is Redis's own: run it with ``appendonly yes`` for jobs to survive a Redis restart.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.typing import EncodableT, FieldT

from brokers._backoff import Backoff
from brokers._delivery import EventAck, WorkDelivery
from brokers._redis_consumer import StreamConsumer
from brokers._redis_keys import EVENT_GROUP, WORK_GROUP, Keys
from brokers._redis_link import Entry, RedisLink, RedisOptions, stream_entries
from brokers._redis_requests import RedisRequester, RequestServer
from brokers._redis_stats import read_stats
from brokers._redis_watch import StreamWatcher
from brokers.base import (
    QUEUES,
    REQUEST_QUEUES,
    Broker,
    BrokerStats,
    DeliveryHandler,
    EventHandler,
    Message,
    ReplyHandler,
    Requester,
    RequestHandler,
    Subscription,
    WatchHandler,
)
from brokers.errors import BrokerClosed, BrokerError, BrokerUnavailable

if TYPE_CHECKING:
    from brokers.settings import BrokerSettings

__all__ = ["RedisBroker", "RedisOptions"]

log = logging.getLogger(__name__)

#: How long a read for the caller (dead letters) waits for Redis.
_READ_TIMEOUT = 5.0
# Heartbeats the heartbeats stream keeps (approximately): a few per worker of a large fleet.
_HEARTBEATS_KEPT = 1000


def _encode(message: Message) -> dict[FieldT, EncodableT]:
    fields: dict[FieldT, EncodableT] = {"job": message.job_id, "body": message.body}
    if message.headers:
        fields["headers"] = json.dumps([list(pair) for pair in message.headers])
    return fields


def _decode(fields: dict[bytes, bytes]) -> Message:
    headers: tuple[tuple[str, str], ...] = ()
    if raw := fields.get(b"headers"):
        try:
            headers = tuple((str(k), str(v)) for k, v in json.loads(raw))
        except ValueError:
            log.warning("ignoring malformed headers %r", raw[:100])
    job_id = fields.get(b"job", b"").decode(errors="replace")
    return Message(job_id, fields.get(b"body", b""), headers)


class _RedisDelivery(WorkDelivery):
    def __init__(
        self, consumer: StreamConsumer[Any], broker: RedisBroker, queue: str, entry: Entry
    ) -> None:
        super().__init__(_decode(entry.fields), entry.attempt, queue)
        self._consumer = consumer
        self._broker = broker
        self._queue = queue
        self._entry_id = entry.id

    def _ack(self) -> None:
        self._consumer.ack(self._entry_id, delete=True)

    def _dead_letter(self, reason: str) -> None:
        self._broker._dead_letter(self._consumer, self._queue, self._entry_id, self, reason)


class _RedisEventAck(EventAck):
    def __init__(self, consumer: StreamConsumer[Any], entry: Entry) -> None:
        super().__init__(entry.fields.get(b"body", b""))
        self._consumer = consumer
        self._entry_id = entry.id

    def _ack(self) -> None:
        # Not deleted: watchers read the same stream, which is trimmed by age and length instead.
        self._consumer.ack(self._entry_id, delete=False)


class RedisBroker(Broker):
    """A broker on one Redis server (``redis://`` or ``rediss://``), its keys under ``namespace``."""

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "mlgate",
        options: RedisOptions | None = None,
    ) -> None:
        self._keys = Keys(namespace)
        self._options = options or RedisOptions()
        self._link = RedisLink(url, self._keys, self._options)
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        self._requesters: list[RedisRequester] = []
        self._declarer: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: BrokerSettings) -> RedisBroker:
        """The broker at ``settings.url`` with the Redis thresholds ``settings`` name."""
        options = RedisOptions(
            heartbeat_ttl=settings.redis_heartbeat_ttl,
            reclaim_interval=settings.redis_reclaim_interval,
            event_retention=settings.redis_event_retention,
            dead_letter_retention=settings.redis_dead_letter_retention,
            ca_file=settings.ca_file or None,
        )
        return cls(settings.url, namespace=settings.namespace, options=options)

    def __repr__(self) -> str:
        return f"RedisBroker({self._link.where()!r}, namespace={self._keys.namespace!r})"

    # -- lifecycle ---------------------------------------------------------------------------

    def _streams(self) -> list[tuple[str, str]]:
        return [(self._keys.queue(q), WORK_GROUP) for q in QUEUES] + [
            (self._keys.events, EVENT_GROUP)
        ]

    def _declare(self) -> None:
        def create() -> None:
            for stream, group in self._streams():
                self._link.ensure_group(stream, group)

        self._link.call("declare the streams", create, timeout=0)

    def start(self) -> None:
        self._link.check_open()
        self._link.start_monitor()
        try:
            self._declare()
        except BrokerUnavailable:
            with self._lock:
                if self._declarer is None or not self._declarer.is_alive():
                    self._declarer = threading.Thread(
                        target=self._keep_declaring, name="redis-declare", daemon=True
                    )
                    self._declarer.start()
            raise

    def _keep_declaring(self) -> None:
        backoff = Backoff(cap=10.0)
        while not self._link.closed.is_set():
            try:
                self._declare()
                log.info("Redis at %s is reachable; streams declared", self._link.where())
                return
            except BrokerClosed:
                return
            except BrokerUnavailable:
                backoff.wait(self._link.closed)
            except BrokerError as exc:  # e.g. a key of the wrong type: say so, keep trying
                log.error("cannot declare the streams: %s", exc)
                backoff.wait(self._link.closed)

    def close(self) -> None:
        with self._lock:
            subscriptions, self._subscriptions = self._subscriptions, []
            requesters, self._requesters = self._requesters, []
        for requester in requesters:
            requester.close()
        for subscription in subscriptions:
            subscription.cancel(timeout=5)
        self._link.close()

    def healthy(self) -> bool:
        # No round trip: callers (the gateway's health service) may run on an event loop.
        return self._link.reachable and not self._link.closed.is_set()

    def _track(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions.append(subscription)

    def _untrack(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def _stream(self, queue: str) -> str:
        if queue not in QUEUES:
            raise ValueError(f"unknown queue {queue!r}; queues are {QUEUES}")
        return self._keys.queue(queue)

    # -- work queues -------------------------------------------------------------------------

    def publish(self, queue: str, message: Message, *, timeout: float) -> None:
        stream = self._stream(queue)
        fields = _encode(message)
        self._link.call(
            f"publish job {message.job_id}",
            lambda: self._link.client.xadd(stream, fields),
            timeout=timeout,
        )

    def consume(self, queue: str, handler: DeliveryHandler, *, prefetch: int) -> Subscription:
        self._link.check_open()
        stream = self._stream(queue)

        def open_delivery(consumer: StreamConsumer[Any], entry: Entry) -> _RedisDelivery:
            return _RedisDelivery(consumer, self, queue, entry)

        return self._subscribe(
            lambda: StreamConsumer(
                self._link,
                stream,
                WORK_GROUP,
                handler,
                open_delivery,
                prefetch=prefetch,
                pause_before_retry=False,
                on_cancel=self._untrack,
            ).start()
        )

    def _subscribe(self, make: Callable[[], Subscription]) -> Subscription:
        subscription = make()
        self._track(subscription)
        return subscription

    def _dead_letter(
        self,
        consumer: StreamConsumer[Any],
        queue: str,
        entry_id: bytes,
        delivery: _RedisDelivery,
        reason: str,
    ) -> None:
        message = delivery.message
        fields: dict[str, bytes | str] = {
            "job": message.job_id,
            "body": message.body,
            "headers": json.dumps([list(pair) for pair in message.headers]),
            "reason": reason,
            "attempt": str(delivery.attempt),
        }
        self._link.call(
            f"dead-letter job {message.job_id}",
            lambda: self._link.dead_letter(
                consumer.stream, consumer.group, entry_id, self._keys.dead(queue), fields
            ),
            timeout=self._options.settle_timeout,
        )

    def dead_letters(self, queue: str, *, limit: int = 100) -> list[Message]:
        self._stream(queue)
        cutoff_ms = int((time.time() - self._options.dead_letter_retention) * 1000)
        reply: Any = self._link.call(
            "read dead letters",
            lambda: self._link.client.xrange(
                self._keys.dead(queue), min=f"{max(cutoff_ms, 0)}-0", max="+", count=limit
            ),
            timeout=_READ_TIMEOUT,
        )
        return [_decode(fields) for _id, fields in stream_entries(reply)]

    def stats(self) -> BrokerStats:
        def read() -> BrokerStats:
            return read_stats(self._link.client, self._keys)

        stats: BrokerStats = self._link.call("read queue figures", read, timeout=_READ_TIMEOUT)
        return stats

    # -- request/reply -----------------------------------------------------------------------

    def requester(self, on_reply: ReplyHandler) -> Requester:
        self._link.check_open()
        requester = RedisRequester(self._link, self._keys, on_reply).start()
        with self._lock:
            self._requesters.append(requester)
        return requester

    def serve_requests(
        self, queue: str, handler: RequestHandler, *, concurrency: int
    ) -> Subscription:
        self._link.check_open()
        if queue not in REQUEST_QUEUES:
            raise ValueError(f"unknown request queue {queue!r}; they are {REQUEST_QUEUES}")
        return self._subscribe(
            lambda: RequestServer(self._link, self._keys, queue, handler, concurrency).start()
        )

    # -- events ------------------------------------------------------------------------------

    def publish_event(self, body: bytes, *, timeout: float, confirm: bool = True) -> None:
        # Redis answers a pipeline in a fraction of a millisecond: every event waits for it.
        options = self._options
        events = self._keys.events

        def send() -> None:
            cutoff_ms = int((time.time() - options.event_retention) * 1000)
            with self._link.client.pipeline(transaction=False) as pipe:
                pipe.xadd(events, {"body": body}, maxlen=options.event_max_len)
                pipe.xtrim(events, minid=f"{max(cutoff_ms, 0)}-0")
                pipe.execute()

        self._link.call("publish an event", send, timeout=timeout)

    def consume_events(self, handler: EventHandler) -> Subscription:
        self._link.check_open()
        # One runner: a gateway records events in the order they were published.
        return self._subscribe(
            lambda: StreamConsumer(
                self._link,
                self._keys.events,
                EVENT_GROUP,
                handler,
                _RedisEventAck,
                prefetch=1,
                pause_before_retry=True,
                on_cancel=self._untrack,
            ).start()
        )

    def watch_events(self, handler: WatchHandler) -> Subscription:
        return self._watch(self._keys.events, handler)

    # -- heartbeats --------------------------------------------------------------------------

    def publish_heartbeat(self, body: bytes) -> None:
        # A short stream, not pub/sub: a watcher that lost its connection for a moment catches
        # up from where it was, and the last few heartbeats are all a watcher ever needs.
        self._link.call(
            "publish a heartbeat",
            lambda: self._link.client.xadd(
                self._keys.heartbeats, {"body": body}, maxlen=_HEARTBEATS_KEPT
            ),
            timeout=_READ_TIMEOUT,
        )

    def watch_heartbeats(self, handler: WatchHandler) -> Subscription:
        return self._watch(self._keys.heartbeats, handler)

    def _watch(self, stream: str, handler: WatchHandler) -> Subscription:
        self._link.check_open()
        return self._subscribe(
            lambda: StreamWatcher(self._link, stream, handler, on_cancel=self._untrack).start()
        )
