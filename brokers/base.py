"""The broker contract, written for RabbitMQ and Redis Streams alike.

Two kinds of traffic cross a broker:

* **Work queues** (``train``, ``predict``): a job message goes to exactly one worker. It is
  acknowledged only after the job's outcome is recorded; a delivery that is never acknowledged
  (the worker died, the connection dropped) is delivered again with ``attempt`` one higher.
* **Requests** (``inference``): request and reply, for online inference. A request goes to one
  worker at most once and is never kept: not persisted, not redelivered as new, dropped unanswered
  once its deadline passes. Its reply comes back on a path private to the requester (RabbitMQ's
  direct reply-to, a Redis list per requester, a call in process). Nothing is recorded, which is
  what makes it fast; a request lost with a worker costs its caller an error, never a duplicate.
* **Job events**: workers publish each job's status events. ``consume_events`` is the durable
  path (events wait while no gateway is up; each event goes to one gateway, which acknowledges it
  after recording it). ``watch_events`` is the live path (every watcher sees every event published
  while it watches; nothing is kept), so the gateway holding a client's stream sees events that
  another gateway recorded.
* **Heartbeats**: each worker says every few seconds that it is alive, what it runs and how long
  until its next heartbeat; every gateway watching hears every heartbeat. Live only, like
  ``watch_events``: nothing is kept or confirmed, as a heartbeat is stale a moment later.

Every method is safe to call from any thread. Handlers run on threads the broker owns and may
block for as long as a job takes: keeping the connection alive meanwhile is the broker's job.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

__all__ = [
    "INFERENCE_QUEUE",
    "PREDICT_QUEUE",
    "PRIOR_ATTEMPTS_HEADER",
    "QUEUES",
    "REQUEST_QUEUES",
    "TRAIN_QUEUE",
    "Broker",
    "BrokerStats",
    "Delivery",
    "EventDelivery",
    "GroupStats",
    "HandBack",
    "IncomingRequest",
    "Message",
    "QueueStats",
    "Reply",
    "Request",
    "Requester",
    "Subscription",
]

TRAIN_QUEUE = "train"
PREDICT_QUEUE = "predict"
QUEUES = (TRAIN_QUEUE, PREDICT_QUEUE)
INFERENCE_QUEUE = "inference"
REQUEST_QUEUES = (INFERENCE_QUEUE,)

#: A work message's header: how many deliveries its job already had in an earlier process. A
#: broker that does not keep jobs (``Broker.keeps_jobs`` false) counts attempts on from there, so
#: a job queued again from the job store after a restart keeps its max_attempts; the others count
#: deliveries themselves and ignore it.
PRIOR_ATTEMPTS_HEADER = "prior-attempts"


@dataclass(frozen=True)
class Message:
    """An immutable job envelope: the job id (for logs and dead letters) and the opaque body."""

    job_id: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = field(default=())


@dataclass(frozen=True)
class Request:
    """One request of request/reply traffic: answered by one worker at most once, never kept."""

    correlation_id: str
    body: bytes
    #: Epoch seconds after which nobody waits for the reply: it is dropped unanswered.
    deadline: float
    headers: tuple[tuple[str, str], ...] = field(default=())


@dataclass(frozen=True)
class IncomingRequest:
    """A request as a serving worker receives it."""

    request: Request
    #: The broker gave it to another worker before, which stopped before answering (RabbitMQ
    #: says so; the other brokers never hand a request out twice).
    redelivered: bool = False


@dataclass(frozen=True)
class Reply:
    """The answer to a request, or the broker error that means none will come."""

    correlation_id: str
    body: bytes = b""
    error: Exception | None = None


@dataclass(frozen=True)
class QueueStats:
    """One work queue as the broker sees it."""

    name: str
    #: Messages waiting for a worker (not yet delivered).
    depth: int
    #: Consumers attached to the queue: one per live worker process.
    consumers: int
    #: Seconds the oldest waiting message has waited since it was published (0.0 when none
    #: waits); None when the broker cannot tell without taking the message from the queue.
    oldest_seconds: float | None = None


@dataclass(frozen=True)
class GroupStats:
    """A consumer group reading a work queue's stream, on a broker built on streams: what a
    stream autoscaler (KEDA's ``redis-streams`` trigger) reads from the broker."""

    queue: str
    #: The stream's and the group's names on the broker, as an autoscaler must name them.
    stream: str
    group: str
    #: Entries not yet delivered to any consumer of the group.
    lag: int
    #: Entries delivered to a consumer and not yet acknowledged.
    pending: int


@dataclass(frozen=True)
class BrokerStats:
    queues: tuple[QueueStats, ...]
    #: One per work queue on a broker built on streams; empty on the others.
    groups: tuple[GroupStats, ...] = ()


class Delivery(abc.ABC):
    """One delivery of a work message. Settle it exactly once with ``ack`` or ``dead_letter``;
    a delivery left unsettled when its handler returns or raises is delivered again, as another
    attempt, unless the handler raised ``HandBack``."""

    message: Message
    #: 1 on the first delivery, then one more for each redelivery.
    attempt: int

    @abc.abstractmethod
    def ack(self) -> None:
        """The job's outcome is recorded: never deliver this message again."""

    @abc.abstractmethod
    def dead_letter(self, reason: str) -> None:
        """Move the message to the dead-letter queue: never deliver it again."""


class HandBack(Exception):
    """Raised by a work handler to give its delivery back untouched, not counted as an attempt:
    the worker is stopping while the job waits for something else (an outage) to come back."""


class EventDelivery(abc.ABC):
    """One job event taken from the durable event channel."""

    body: bytes

    @abc.abstractmethod
    def ack(self) -> None:
        """The event is recorded: never deliver it again."""


class Subscription(abc.ABC):
    """A running consumer; ``cancel`` stops it. Unsettled deliveries go back to the queue."""

    @abc.abstractmethod
    def cancel(self, timeout: float | None = None) -> None:
        """Stop taking messages, wait up to ``timeout`` for running handlers, then return."""


class Requester(abc.ABC):
    """The requesting side of request/reply: a reply path of its own, for the life of a process."""

    @abc.abstractmethod
    def send(self, queue: str, request: Request) -> None:
        """Hand ``request`` to the broker without blocking: safe to call on an event loop.

        Its reply, or the ``BrokerError`` that stopped it, comes to the ``on_reply`` this
        requester was made with, on a thread the broker owns. Raises ``BrokerUnavailable`` at
        once while the broker is known to be out of reach."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop receiving replies."""


DeliveryHandler = Callable[[Delivery], None]
ReplyHandler = Callable[[Reply], None]
#: Answers a request with the reply's body; runs on a thread the broker owns.
RequestHandler = Callable[[IncomingRequest], bytes]
EventHandler = Callable[[EventDelivery], None]
WatchHandler = Callable[[bytes], None]


class Broker(abc.ABC):
    """A connection to a message broker, owned for the life of a process."""

    #: The backend, as ``MLGATE_BROKER`` names it: for messages and status, never for branching.
    name: ClassVar[str]
    #: Whether queued jobs outlive this process. When they do not, whoever starts the process
    #: queues again the jobs the job store says are unfinished (with ``PRIOR_ATTEMPTS_HEADER``).
    keeps_jobs: ClassVar[bool] = True

    @abc.abstractmethod
    def start(self) -> None:
        """Connect and declare the topology. Raises ``BrokerUnavailable`` if it cannot, but keeps
        trying in the background, so a process may start before its broker."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop every subscription and disconnect."""

    @abc.abstractmethod
    def healthy(self) -> bool:
        """Whether the broker is reachable right now."""

    @abc.abstractmethod
    def publish(self, queue: str, message: Message, *, timeout: float) -> None:
        """Put a job on a work queue durably. Returns once the broker has accepted it;
        raises ``BrokerUnavailable`` if that is not so within ``timeout`` seconds."""

    @abc.abstractmethod
    def consume(self, queue: str, handler: DeliveryHandler, *, prefetch: int) -> Subscription:
        """Run ``handler`` for each message of ``queue``, at most ``prefetch`` at a time."""

    @abc.abstractmethod
    def requester(self, on_reply: ReplyHandler) -> Requester:
        """A requester whose replies (and failures) go to ``on_reply``."""

    @abc.abstractmethod
    def serve_requests(
        self, queue: str, handler: RequestHandler, *, concurrency: int
    ) -> Subscription:
        """Answer the requests of ``queue`` with ``handler``, ``concurrency`` at a time. Requests
        whose deadline has passed are dropped unanswered; a handler that raises sends nothing."""

    @abc.abstractmethod
    def publish_event(self, body: bytes, *, timeout: float, confirm: bool = True) -> None:
        """Publish a job event durably to the gateways (both the durable and the live path).

        With ``confirm=False`` (progress, which a job's outcome does not depend on) the broker
        may return before the event is confirmed, and raises at once rather than waiting for a
        broker that is out of reach; events published by one process keep their order either way.
        """

    @abc.abstractmethod
    def consume_events(self, handler: EventHandler) -> Subscription:
        """Take events from the durable channel; events published while nobody consumed wait."""

    @abc.abstractmethod
    def watch_events(self, handler: WatchHandler) -> Subscription:
        """Receive every event published from now on, live, with no acknowledgement."""

    @abc.abstractmethod
    def publish_heartbeat(self, body: bytes) -> None:
        """Send a worker's heartbeat (``body``, opaque here) to every watcher of heartbeats,
        without waiting for a confirmation; raises ``BrokerUnavailable`` at once while the broker
        is out of reach."""

    @abc.abstractmethod
    def watch_heartbeats(self, handler: WatchHandler) -> Subscription:
        """Receive every heartbeat published from now on, live, with no acknowledgement."""

    @abc.abstractmethod
    def dead_letters(self, queue: str, *, limit: int = 100) -> list[Message]:
        """The messages dead-lettered from ``queue``, oldest first, without removing them."""

    @abc.abstractmethod
    def stats(self) -> BrokerStats:
        """Each work queue's depth, consumers and oldest waiting message, for ``mlgate status``
        and the metrics (with the consumer groups behind them, on a broker built on streams).
        An operator's query, not a hot path; raises ``BrokerUnavailable`` if it cannot answer."""
