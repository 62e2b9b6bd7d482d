"""Confirmed publishing over the broker's publisher connection.

Every publish is mandatory and waits for the broker's confirm: a message the broker refused
(``basic.nack``), could not route (``basic.return``: a queue was deleted) or did not confirm in
time is an error, never a silent accept. A connection lost before the confirm means the outcome
is unknown, so the message goes again once the connection is back (at least once, within the
caller's timeout). ``send`` alone, for what nothing depends on (a job's progress), does not wait.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from concurrent.futures import Future
from functools import partial
from typing import Any

import pika
from pika import spec

from brokers._backoff import backoff
from brokers._rabbitmq_link import AmqpLink, IOThread
from brokers._rabbitmq_topology import Topology
from brokers.errors import BrokerUnavailable, PublishNotConfirmed

__all__ = ["Publisher"]

log = logging.getLogger("brokers.rabbitmq")

# Ties a basic.return to its publish; headers starting "x-" never reach a Message.
_SEQ_HEADER = "x-mlgate-seq"
# The first RabbitMQ version to honour a consumer's own x-consumer-timeout.
_CONSUMER_TIMEOUT_VERSION = (3, 12)

_ACKED, _NACKED, _RETURNED, _LOST = "acked", "refused", "unroutable", "lost"


class _Pending:
    """One publish waiting for its confirm."""

    __slots__ = ("done", "outcome", "returned")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.outcome = ""
        self.returned = False

    def settle(self, outcome: str) -> None:
        if not self.done.is_set():
            self.outcome = outcome
            self.done.set()


class Publisher:
    """Owns the publisher connection and its confirm-mode channel, and declares the topology."""

    def __init__(
        self, io: IOThread, parameters: pika.ConnectionParameters, topology: Topology
    ) -> None:
        self.link = AmqpLink(io, parameters, "publisher", self._on_open, self._on_lost)
        self.ready = threading.Event()
        self._io = io
        self._topology = topology
        # IO-thread state.
        self._channel: Any = None
        self._seq = 0
        self._pending: dict[int, _Pending] = {}
        self._attempt = 0
        self._retry: object = None
        self._checked_version = False

    def start(self) -> None:
        self.link.start()

    def close(self, timeout: float) -> None:
        self.link.close(timeout)

    @property
    def healthy(self) -> bool:
        return self.ready.is_set() and not self.link.blocked

    # --- the IO thread ---

    def _on_open(self, connection: Any) -> None:
        if not self._checked_version:
            self._checked_version = True
            _check_version(connection)
        self._open_channel()

    def _open_channel(self) -> None:
        self._retry = None
        connection = self.link.connection
        if connection is not None and connection.is_open:
            connection.channel(on_open_callback=self._on_channel_open)

    def _on_channel_open(self, channel: Any) -> None:
        # Confirms number the channel's publishes from 1; _pending is keyed by that number.
        self._seq = 0
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(
            self._on_confirm,
            callback=lambda _frame: self._topology.declare(
                channel, then=lambda: self._on_declared(channel)
            ),
        )

    def _on_declared(self, channel: Any) -> None:
        if not channel.is_open:
            return
        self._channel = channel
        self._attempt = 0
        self.ready.set()

    def _on_channel_closed(self, channel: Any, reason: BaseException) -> None:
        if self._channel not in (None, channel):
            return
        self._reset()
        connection = self.link.connection
        if connection is not None and connection.is_open:
            # The broker closed the channel but not the connection: a declaration clashed with an
            # existing queue, or the like. Say so, and keep trying.
            log.error("RabbitMQ closed the publisher channel: %s", reason)
            self._retry = self._io.call_later(backoff(self._attempt), self._open_channel)
            self._attempt += 1

    def _on_lost(self) -> None:
        if self._retry is not None:
            self._io.cancel_later(self._retry)
            self._retry = None
        self._reset()

    def _reset(self) -> None:
        self.ready.clear()
        self._channel = None
        pending, self._pending = self._pending, {}
        for publish in pending.values():
            publish.settle(_LOST)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        outcome = _ACKED if isinstance(method, spec.Basic.Ack) else _NACKED
        if method.multiple:
            tags = [tag for tag in self._pending if tag <= method.delivery_tag]
        else:
            tags = [method.delivery_tag]
        for tag in tags:
            publish = self._pending.pop(tag, None)
            if publish is not None:
                publish.settle(_RETURNED if publish.returned and outcome == _ACKED else outcome)

    def _on_return(self, _channel: Any, method: Any, properties: Any, _body: bytes) -> None:
        publish = self._pending.get((properties.headers or {}).get(_SEQ_HEADER, -1))
        if publish is not None:
            publish.returned = True
        log.warning(
            "RabbitMQ could not route a message to %r/%r: %s",
            method.exchange,
            method.routing_key,
            method.reply_text,
        )

    def _send(
        self,
        publish: _Pending,
        exchange: str,
        routing_key: str,
        body: bytes,
        template: Any,
        mandatory: bool = True,
    ) -> None:
        channel = self._channel
        if channel is None or not channel.is_open:
            publish.settle(_LOST)
            return
        self._seq += 1
        properties = copy.copy(template)
        properties.headers = {**(template.headers or {}), _SEQ_HEADER: self._seq}
        try:
            channel.basic_publish(exchange, routing_key, body, properties, mandatory=mandatory)
        except Exception as exc:
            log.warning("publish failed on the IO thread: %s", exc)
            publish.settle(_LOST)
            return
        self._pending[self._seq] = publish

    def _redeclare(self) -> None:
        channel = self._channel
        if channel is not None and channel.is_open and self.ready.is_set():
            self.ready.clear()
            self._topology.declare(channel, then=lambda: self._on_declared(channel))

    # --- any thread ---

    def publish(
        self, exchange: str, routing_key: str, body: bytes, properties: Any, timeout: float
    ) -> None:
        """Publish and wait for the broker's confirm; see the module docstring."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.ready.wait(remaining):
                if last:
                    raise PublishNotConfirmed(
                        f"RabbitMQ did not confirm the message within {timeout}s (last try: {last})"
                    )
                raise BrokerUnavailable(
                    f"RabbitMQ is unreachable (for {timeout}s): {self.link.last_error}"
                )
            publish = _Pending()
            self._io.call(partial(self._send, publish, exchange, routing_key, body, properties))
            if not publish.done.wait(max(0.0, deadline - time.monotonic())):
                raise PublishNotConfirmed(f"RabbitMQ did not confirm the message within {timeout}s")
            if publish.outcome == _ACKED:
                return
            if publish.outcome == _NACKED:
                raise PublishNotConfirmed("RabbitMQ refused the message (basic.nack)")
            if publish.outcome == _RETURNED:
                # A queue of the topology is gone (deleted by hand?): declare it again and retry.
                self._io.call(self._redeclare)
            last = publish.outcome

    def send(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: Any,
        *,
        mandatory: bool = True,
    ) -> None:
        """Publish without waiting for the confirm, which is most of a publish's time: in the
        channel's order, after every publish before it. Raises BrokerUnavailable at once while
        the connection is down; whatever happens to the message afterwards goes unreported (an
        unroutable one is logged, unless not ``mandatory``: then it is dropped quietly)."""
        if not self.ready.is_set():
            raise BrokerUnavailable(f"RabbitMQ is unreachable: {self.link.last_error}")
        send = partial(self._send, _Pending(), exchange, routing_key, body, properties, mandatory)
        self._io.call(send)

    def browse(self, queue: str, limit: int, timeout: float) -> list[tuple[Any, bytes]]:
        """Up to ``limit`` messages from the head of ``queue``, left in place.

        The messages are fetched unacknowledged on a channel of their own, then the channel is
        closed, which puts them back where they were (a classic queue keeps their order). This is
        an operator's query, so a short-lived channel is fine here.
        """
        if not self.ready.wait(timeout):
            raise BrokerUnavailable(f"RabbitMQ is unreachable: {self.link.last_error}")
        result: Future[list[tuple[Any, bytes]]] = Future()
        self._io.call(lambda: self._browse(queue, limit, result))
        try:
            return result.result(timeout)
        except TimeoutError:
            raise BrokerUnavailable(f"RabbitMQ did not answer in {timeout}s") from None

    def _browse(self, queue: str, limit: int, result: Future[list[tuple[Any, bytes]]]) -> None:
        connection = self.link.connection
        if connection is None or not connection.is_open:
            result.set_exception(BrokerUnavailable("RabbitMQ connection lost"))
            return
        got: list[tuple[Any, bytes]] = []

        def on_open(channel: Any) -> None:
            def on_closed(_channel: Any, reason: BaseException) -> None:
                if not result.done():
                    result.set_exception(
                        BrokerUnavailable(f"RabbitMQ closed the channel: {reason}")
                    )

            def finish() -> None:
                if not result.done():
                    result.set_result(list(got))
                channel.close()

            def on_get(_channel: Any, _method: Any, properties: Any, body: bytes) -> None:
                got.append((properties, body))
                if len(got) >= limit:
                    finish()
                else:
                    channel.basic_get(queue, on_get)

            channel.add_on_close_callback(on_closed)
            channel.add_callback(lambda _frame: finish(), [spec.Basic.GetEmpty], one_shot=False)
            if limit <= 0:
                finish()
            else:
                channel.basic_get(queue, on_get)

        connection.channel(on_open_callback=on_open)

    def queue_figures(self, queues: list[str], timeout: float) -> list[tuple[int, int]]:
        """(messages ready, consumers) of each queue, by passive declares on a channel of their
        own (an operator's query: a missing queue closes that channel, not the publishing one)."""
        if not self.ready.wait(timeout):
            raise BrokerUnavailable(f"RabbitMQ is unreachable: {self.link.last_error}")
        result: Future[list[tuple[int, int]]] = Future()
        self._io.call(lambda: self._queue_figures(queues, result))
        try:
            return result.result(timeout)
        except TimeoutError:
            raise BrokerUnavailable(f"RabbitMQ did not answer in {timeout}s") from None

    def _queue_figures(self, queues: list[str], result: Future[list[tuple[int, int]]]) -> None:
        connection = self.link.connection
        if connection is None or not connection.is_open:
            result.set_exception(BrokerUnavailable("RabbitMQ connection lost"))
            return
        found: list[tuple[int, int]] = []

        def on_open(channel: Any) -> None:
            def on_closed(_channel: Any, reason: BaseException) -> None:
                if not result.done():
                    result.set_exception(
                        BrokerUnavailable(f"RabbitMQ closed the channel: {reason}")
                    )

            def next_queue() -> None:
                if len(found) == len(queues):
                    result.set_result(list(found))
                    channel.close()
                else:
                    channel.queue_declare(queues[len(found)], passive=True, callback=on_declared)

            def on_declared(frame: Any) -> None:
                found.append((int(frame.method.message_count), int(frame.method.consumer_count)))
                next_queue()

            channel.add_on_close_callback(on_closed)
            next_queue()

        connection.channel(on_open_callback=on_open)


def _check_version(connection: Any) -> None:
    raw = (connection.server_properties or {}).get("version", b"")
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    try:
        version = tuple(int(part) for part in text.split(".")[:2])
    except ValueError:
        return
    if version < _CONSUMER_TIMEOUT_VERSION:
        log.warning(
            "RabbitMQ %s ignores a consumer's own x-consumer-timeout: a job running longer than "
            "the node's consumer_timeout (30 min by default) gets its channel closed and runs "
            "again. Raise consumer_timeout in rabbitmq.conf (see deploy/rabbitmq/rabbitmq.conf).",
            text,
        )
