"""The RabbitMQ topology mlgate relies on, as data: declared by the code, exported for operators.

For a namespace ``ns`` (default ``mlgate``)::

    queue ns.train, ns.predict   quorum queues; x-delivery-count counts attempts, and a message
                                 past DELIVERY_LIMIT goes to ns.dead (a backstop: the worker
                                 dead-letters after its own MLGATE_MAX_ATTEMPTS, far lower)
    exchange ns.dead (direct)    dead letters, routed by the work queue's name
    queue ns.train.dead, ...     classic queues: listing them returns messages to their place
    exchange ns.events (fanout)  every job event, to the durable queue and to every watcher
    exchange ns.workers (fanout) workers' heartbeats, to every gateway's private queue (none kept)
    queue ns.events              classic, single active consumer: one gateway records events
                                 in order; another takes over when it goes
    queue ns.inference           classic: inference requests, transient messages that expire
                                 with their deadline; replies go by direct reply-to

Everything is in queue arguments, not policies: a client can declare arguments (and RabbitMQ
checks them on every declaration) but only an operator can set policies.

``python -m brokers._rabbitmq_topology > deploy/rabbitmq/definitions.json`` regenerates the
definitions file operators preload; a test keeps the two equal.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brokers.base import QUEUES, REQUEST_QUEUES

__all__ = ["DELIVERY_LIMIT", "Binding", "Exchange", "Queue", "Topology"]

#: Deliveries after which RabbitMQ itself dead-letters a job. Far above any sane
#: MLGATE_MAX_ATTEMPTS, so the worker decides (and records why); RabbitMQ 4 would otherwise
#: apply its own default of 20.
DELIVERY_LIMIT = 50

# A fixed salt keeps the generated file stable; the password is guest's well-known one.
_GUEST_SALT = b"mlgt"


@dataclass(frozen=True)
class Exchange:
    name: str
    type: str


@dataclass(frozen=True)
class Queue:
    name: str
    arguments: tuple[tuple[str, Any], ...]

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.arguments)


@dataclass(frozen=True)
class Binding:
    exchange: str
    queue: str
    routing_key: str


@dataclass(frozen=True)
class Topology:
    """The names and declarations of one namespace on a virtual host."""

    namespace: str = "mlgate"

    def work_queue(self, queue: str) -> str:
        return f"{self.namespace}.{queue}"

    def request_queue(self, queue: str) -> str:
        return f"{self.namespace}.{queue}"

    def dead_queue(self, queue: str) -> str:
        return f"{self.namespace}.{queue}.dead"

    @property
    def dead_exchange(self) -> str:
        return f"{self.namespace}.dead"

    @property
    def events_exchange(self) -> str:
        return f"{self.namespace}.events"

    @property
    def events_queue(self) -> str:
        return f"{self.namespace}.events"

    @property
    def heartbeats_exchange(self) -> str:
        return f"{self.namespace}.workers"

    @property
    def exchanges(self) -> tuple[Exchange, ...]:
        return (
            Exchange(self.dead_exchange, "direct"),
            Exchange(self.events_exchange, "fanout"),
            Exchange(self.heartbeats_exchange, "fanout"),
        )

    @property
    def queues(self) -> tuple[Queue, ...]:
        work = tuple(
            Queue(
                self.work_queue(q),
                (
                    ("x-queue-type", "quorum"),
                    ("x-dead-letter-exchange", self.dead_exchange),
                    ("x-delivery-limit", DELIVERY_LIMIT),
                ),
            )
            for q in QUEUES
        )
        dead = tuple(Queue(self.dead_queue(q), (("x-queue-type", "classic"),)) for q in QUEUES)
        events = Queue(
            self.events_queue, (("x-queue-type", "classic"), ("x-single-active-consumer", True))
        )
        requests = tuple(
            Queue(self.request_queue(q), (("x-queue-type", "classic"),)) for q in REQUEST_QUEUES
        )
        return (*work, *dead, events, *requests)

    @property
    def bindings(self) -> tuple[Binding, ...]:
        # A dead letter keeps the routing key it was published with: the work queue's name.
        dead = tuple(
            Binding(self.dead_exchange, self.dead_queue(q), self.work_queue(q)) for q in QUEUES
        )
        return (*dead, Binding(self.events_exchange, self.events_queue, ""))

    def declare(self, channel: Any, then: Callable[[], None]) -> None:
        """Declare everything on a pika channel, then call ``then``.

        The declarations go out pipelined (nowait) except the last, whose reply comes once the
        broker has processed them all; a failing one closes the channel instead.
        """
        for exchange in self.exchanges:
            channel.exchange_declare(exchange.name, exchange.type, durable=True)
        for queue in self.queues:
            channel.queue_declare(queue.name, durable=True, arguments=queue.args)
        *first, last = self.bindings
        for binding in first:
            channel.queue_bind(binding.queue, binding.exchange, routing_key=binding.routing_key)
        channel.queue_bind(
            last.queue, last.exchange, routing_key=last.routing_key, callback=lambda _f: then()
        )

    def definitions(self, vhost: str = "/") -> dict[str, Any]:
        """The topology as a RabbitMQ definitions document (``rabbitmqctl import_definitions``,
        or ``load_definitions`` in rabbitmq.conf), with the guest user for a local broker."""
        digest = hashlib.sha256(_GUEST_SALT + b"guest").digest()
        return {
            "users": [
                {
                    "name": "guest",
                    "password_hash": base64.b64encode(_GUEST_SALT + digest).decode(),
                    "hashing_algorithm": "rabbit_password_hashing_sha256",
                    "tags": ["administrator"],
                    "limits": {},
                }
            ],
            "vhosts": [{"name": vhost}],
            "permissions": [
                {"user": "guest", "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
            ],
            "parameters": [],
            "policies": [],
            "queues": [
                {
                    "name": q.name,
                    "vhost": vhost,
                    "durable": True,
                    "auto_delete": False,
                    "arguments": q.args,
                }
                for q in self.queues
            ],
            "exchanges": [
                {
                    "name": e.name,
                    "vhost": vhost,
                    "type": e.type,
                    "durable": True,
                    "auto_delete": False,
                    "internal": False,
                    "arguments": {},
                }
                for e in self.exchanges
            ],
            "bindings": [
                {
                    "source": b.exchange,
                    "vhost": vhost,
                    "destination": b.queue,
                    "destination_type": "queue",
                    "routing_key": b.routing_key,
                    "arguments": {},
                }
                for b in self.bindings
            ],
        }


if __name__ == "__main__":
    print(json.dumps(Topology().definitions(), indent=2))
