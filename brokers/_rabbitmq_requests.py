"""Request/reply on RabbitMQ: requests on a classic queue, replies by direct reply-to.

* The requester consumes ``amq.rabbitmq.reply-to`` (no acknowledgements, no queue to declare) on
  a channel of its own on the consumer connection, and publishes its requests on that same
  channel, as direct reply-to requires: transient, without confirms, mandatory (a missing queue
  is an error at once), each expiring in the queue when its deadline passes.
* Workers take requests with manual acknowledgement, ``concurrency`` at a time, so two workers
  share the load and a worker that dies hands its requests back: RabbitMQ redelivers them flagged
  ``redelivered``, and the worker that gets one says so to its handler.
* A requester whose channel or connection goes fails every request still waiting for a reply
  with ``BrokerUnavailable``: RabbitMQ drops replies addressed to a channel that is gone.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from functools import partial
from typing import Any

import pika

from brokers._backoff import backoff
from brokers._rabbitmq_consumer import Consumers, Item, Subscriber
from brokers._rabbitmq_deliveries import decode
from brokers._rabbitmq_topology import Topology
from brokers._requests import Outstanding, ServedRequest, request_pool
from brokers.base import IncomingRequest, Reply, ReplyHandler, Request, Requester, RequestHandler
from brokers.errors import BrokerClosed, BrokerUnavailable

__all__ = ["RabbitRequester", "RequestSubscriber"]

log = logging.getLogger("brokers.rabbitmq")

_REPLY_TO = "amq.rabbitmq.reply-to"
_DEADLINE_HEADER = "x-mlgate-deadline"
_TRANSIENT = pika.DeliveryMode.Transient
_LOST = "the connection to RabbitMQ was lost before the reply came"


class RabbitRequester(Requester):
    """A reply channel on the consumer connection, and the requests published on it."""

    def __init__(self, owner: Consumers, topology: Topology, on_reply: ReplyHandler) -> None:
        self._owner = owner
        self._io = owner.io
        self._topology = topology
        self.outstanding = Outstanding(on_reply)
        self.ready = threading.Event()
        self._closed = False
        # IO-thread state.
        self._channel: Any = None
        self._connection: Any = None
        self._attempt = 0
        self._retry: object = None

    # --- the IO thread ---

    def attach(self, connection: Any) -> None:
        self._retry = None
        if self._closed or self._channel is not None or not connection.is_open:
            return
        self._connection = connection
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_channel_open(self, channel: Any) -> None:
        if self._closed or self._channel is not None or channel.connection is not self._connection:
            channel.close()
            return
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.basic_consume(
            _REPLY_TO, self._on_reply, auto_ack=True, callback=lambda _frame: self._consuming()
        )

    def _consuming(self) -> None:
        self._attempt = 0
        self.ready.set()

    def _on_reply(self, _channel: Any, _method: Any, properties: Any, body: bytes) -> None:
        self.outstanding.reply(Reply(properties.correlation_id or "", body))

    def _on_return(self, _channel: Any, method: Any, properties: Any, _body: bytes) -> None:
        self.outstanding.fail(
            properties.correlation_id or "",
            BrokerUnavailable(f"RabbitMQ could not route the request: {method.reply_text}"),
        )

    def detach(self) -> None:
        self._channel = None
        self.ready.clear()
        if self._retry is not None:
            self._io.cancel_later(self._retry)
            self._retry = None
        self.outstanding.fail_all(BrokerUnavailable(_LOST))

    def _on_channel_closed(self, channel: Any, reason: BaseException) -> None:
        if channel is not self._channel:
            return
        self.detach()
        connection = self._connection
        if self._closed or connection is None or not connection.is_open:
            return
        log.warning("RabbitMQ closed the reply channel (%s); opening another", reason)
        self._retry = self._io.call_later(backoff(self._attempt), lambda: self.attach(connection))
        self._attempt += 1

    def _publish(self, queue: str, request: Request, expiration_ms: int) -> None:
        channel = self._channel
        if channel is None or not channel.is_open:
            self.outstanding.fail(request.correlation_id, BrokerUnavailable(_LOST))
            return
        properties = pika.BasicProperties(
            delivery_mode=_TRANSIENT,
            reply_to=_REPLY_TO,
            correlation_id=request.correlation_id,
            expiration=str(expiration_ms),
            headers={**dict(request.headers), _DEADLINE_HEADER: repr(request.deadline)},
        )
        try:
            channel.basic_publish(
                "", self._topology.request_queue(queue), request.body, properties, mandatory=True
            )
        except Exception as exc:
            self.outstanding.fail(request.correlation_id, BrokerUnavailable(f"{_LOST}: {exc}"))

    # --- any thread ---

    def send(self, queue: str, request: Request) -> None:
        if self._closed:
            raise BrokerClosed("the requester is closed")
        if not self.ready.is_set():
            raise BrokerUnavailable("RabbitMQ is unreachable: no reply channel")
        expiration_ms = max(1, int((request.deadline - time.time()) * 1000))
        self.outstanding.add(request.correlation_id, request.deadline)
        self._io.call(partial(self._publish, queue, request, expiration_ms))

    def close(self) -> None:
        self._closed = True

        def close() -> None:
            self._owner.discard(self)
            channel = self._channel
            self._channel = None
            if channel is not None and channel.is_open:
                channel.close()

        with contextlib.suppress(BrokerClosed):
            self._io.call(close)


class RequestSubscriber(Subscriber):
    """Answers the requests of one request queue, ``concurrency`` at a time."""

    def __init__(
        self,
        owner: Consumers,
        topology: Topology,
        queue: str,
        handler: RequestHandler,
        concurrency: int,
    ) -> None:
        super().__init__(owner, topology, f"rabbitmq-{queue}", max(1, concurrency))
        self._queue = topology.request_queue(queue)
        self.pool = request_pool(self.name, self._prefetch, handler, self, on_room=self.room_freed)

    def _consume(self, channel: Any) -> str:
        tag: str = channel.basic_consume(self._queue, self.on_message)
        return tag

    # --- the transport of the handler pool ---

    def open(self, item: Item) -> ServedRequest | None:
        if item.epoch != self.epoch:
            return None  # its channel is gone: RabbitMQ has put it back already
        message = decode(item.properties, item.body)
        raw = (item.properties.headers or {}).get(_DEADLINE_HEADER, b"0")
        try:
            deadline = float(raw.decode() if isinstance(raw, bytes) else raw)
        except ValueError:
            deadline = 0.0
        request = Request(
            item.properties.correlation_id or "", item.body, deadline, message.headers
        )
        reply_to = item.properties.reply_to or ""
        tag = item.tag

        def answer(body: bytes) -> None:
            def send(channel: Any) -> None:
                if reply_to:
                    properties = pika.BasicProperties(correlation_id=request.correlation_id)
                    channel.basic_publish("", reply_to, body, properties)
                channel.basic_ack(tag)

            self._settle_later(item, send)

        def drop() -> None:
            self._settle_later(item, lambda channel: channel.basic_ack(tag))

        return ServedRequest(IncomingRequest(request, item.redelivered), answer, drop)

    def _settle_later(self, item: Item, settle: Any) -> None:
        # Without waiting for the IO thread: the reply is on its way, the handler thread is free.
        def now() -> None:
            self.settle_now(item, settle)

        with contextlib.suppress(BrokerClosed):
            self._io.call(now)

    def retry(self, item: Item) -> None:
        pass  # never asked: a served request is always settled

    def release(self, item: Item) -> None:
        tag = item.tag
        self.settle(item, lambda channel: channel.basic_nack(tag, requeue=True))
