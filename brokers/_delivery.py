"""The delivery policy, written once for every broker: a backend moves messages, this runs them.

A subscription's handlers run on a ``HandlerPool``: threads of its own, so a handler may block for
hours while the backend keeps its connection alive. The backend ``put``s each delivery it receives
into the pool and reads ``free``/``busy`` to take no more than the pool can run. For each one the
pool

* opens it (``Transport.open``) and runs the handler, logging what the handler raises;
* leaves alone a delivery the handler settled, hands back untouched one whose handler raised
  ``HandBack`` (``Transport.release``: not an attempt), and sends back one it left unsettled
  (``Transport.retry``: the delivery counts as an attempt), after a pause that grows while
  deliveries keep failing if the subscription asks for one (an ordered event consumer, which
  would otherwise spin on an event it cannot record);
* once stopping, runs nothing more: what it still holds or is given goes back untouched
  (``Transport.release``).

``WorkDelivery`` and ``EventAck`` are what handlers see: each settles at most once however often
it is asked, and only a settlement that went through counts, so a failed ack or dead letter leaves
the delivery to be sent back. A backend provides the transport (how to open, ack, dead-letter,
send back and hand back a delivery) and nothing else.
"""

from __future__ import annotations

import abc
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from brokers._backoff import Backoff
from brokers.base import Delivery, EventDelivery, HandBack, Message, WatchHandler

__all__ = ["EventAck", "HandlerPool", "Settleable", "Transport", "WorkDelivery", "watch_pool"]

log = logging.getLogger("brokers.delivery")


class Settleable(Protocol):
    #: Whether the handler settled the delivery; read once the handler has returned.
    settled: bool


ItemT = TypeVar("ItemT")  # a backend's own record of one delivery
DeliveryT = TypeVar("DeliveryT", bound=Settleable)
DeliveryT_co = TypeVar("DeliveryT_co", bound=Settleable, covariant=True)


class Transport(Protocol[ItemT, DeliveryT_co]):
    """What a backend does with the deliveries of one subscription."""

    def open(self, item: ItemT, /) -> DeliveryT_co | None:
        """The delivery the handler gets, or None if ``item`` is no longer this consumer's (its
        channel is gone: the broker has put it back already)."""

    def retry(self, item: ItemT, /) -> ItemT | None:
        """Send back ``item``, which the handler left unsettled. Returns the item to run again at
        once on this thread, or None if it goes back to the broker."""

    def release(self, item: ItemT, /) -> None:
        """Hand ``item`` back untouched: the subscription is stopping. Called from any thread."""


class WorkDelivery(Delivery):
    """A job delivery; a backend says how to ``_ack`` and ``_dead_letter`` it."""

    def __init__(self, message: Message, attempt: int, source: str) -> None:
        self.message = message
        self.attempt = attempt
        self.settled = False
        self._source = source  # the queue, for the log

    def __str__(self) -> str:
        return f"job {self.message.job_id}"

    def ack(self) -> None:
        if not self.settled:
            self._ack()
            self.settled = True

    def dead_letter(self, reason: str) -> None:
        if self.settled:
            return
        self._dead_letter(reason)
        self.settled = True
        log.warning("dead-lettered job %s from %s: %s", self.message.job_id, self._source, reason)

    @abc.abstractmethod
    def _ack(self) -> None:
        """Acknowledge on the broker; raises ``BrokerError`` if that did not happen."""

    @abc.abstractmethod
    def _dead_letter(self, reason: str) -> None:
        """Move the message to the dead letters and acknowledge it; raises ``BrokerError`` if
        that did not happen."""


class EventAck(EventDelivery):
    """An event from the durable channel; a backend says how to ``_ack`` it."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.settled = False

    def __str__(self) -> str:
        return "an event"

    def ack(self) -> None:
        if not self.settled:
            self._ack()
            self.settled = True

    @abc.abstractmethod
    def _ack(self) -> None:
        """Acknowledge on the broker; raises ``BrokerError`` if that did not happen."""


class HandlerPool(Generic[ItemT, DeliveryT]):
    """``size`` threads running ``handler`` on the deliveries a transport puts in.

    ``pause`` (one thread only) waits before each retry, longer while deliveries keep failing;
    ``on_room`` is called, from a pool thread, each time a delivery is finished.
    """

    def __init__(
        self,
        name: str,
        size: int,
        handler: Callable[[DeliveryT], object],
        transport: Transport[ItemT, DeliveryT],
        *,
        pause: bool = False,
        on_room: Callable[[], None] | None = None,
    ) -> None:
        if pause and size != 1:
            raise ValueError("a pause before retrying is for one-thread (ordered) pools")
        self.name = name
        self.size = size
        self.stopping = threading.Event()
        self._handler = handler
        self._transport = transport
        self._pause = Backoff() if pause else None
        self._on_room = on_room
        self._cond = threading.Condition()
        self._held: dict[int, ItemT] = {}  # put and not yet finished; under _cond
        self._tickets = itertools.count()
        self._inbox: queue.SimpleQueue[tuple[int, ItemT] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(size)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    # --- the transport's side ---

    def put(self, item: ItemT) -> None:
        """Run ``item`` on a free thread; once stopping, hand it back instead."""
        with self._cond:
            accepted = not self.stopping.is_set()
            if accepted:
                ticket = next(self._tickets)
                self._held[ticket] = item
                self._inbox.put((ticket, item))
        if not accepted:
            self._transport.release(item)

    @property
    def busy(self) -> int:
        """How many deliveries were put and are not finished (running or about to)."""
        with self._cond:
            return len(self._held)

    def held(self) -> list[ItemT]:
        with self._cond:
            return list(self._held.values())

    def free(self) -> int:
        with self._cond:
            return self.size - len(self._held)

    def wait_for_room(self, until: float | None = None) -> int:
        """Wait until a thread is free (or the pool stops, or ``until`` passes); how many are."""
        with self._cond:
            while len(self._held) >= self.size and not self.stopping.is_set():
                remaining = None if until is None else until - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            return 0 if self.stopping.is_set() else self.size - len(self._held)

    # --- stopping ---

    def stop(self) -> bool:
        """Run nothing more; False if the pool was stopping already."""
        with self._cond:
            if self.stopping.is_set():
                return False
            self.stopping.set()
            self._cond.notify_all()
            return True

    def join(self, deadline: float | None) -> list[ItemT]:
        """Stop, wait until ``deadline`` for running handlers, and return what they still hold:
        a late settlement still counts, but the backend should hand these back now."""
        self.stop()
        for _ in self._threads:
            self._inbox.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self.held()

    # --- the pool's threads ---

    def _run(self) -> None:
        while (job := self._inbox.get()) is not None:
            ticket, item = job
            try:
                self._serve(item)
            except Exception:
                log.exception("%s: unexpected error handling a delivery", self.name)
            finally:
                with self._cond:
                    del self._held[ticket]
                    self._cond.notify_all()
                if self._on_room is not None:
                    self._on_room()

    def _serve(self, item: ItemT) -> None:
        current: ItemT | None = item
        while current is not None:
            if self.stopping.is_set():
                self._transport.release(current)
                return
            delivery = self._transport.open(current)
            if delivery is None:
                return
            try:
                self._handler(delivery)
            except HandBack:
                if not delivery.settled:
                    self._transport.release(current)
                return
            except Exception:
                log.exception(
                    "%s: handler failed on %s%s",
                    self.name,
                    delivery,
                    "" if delivery.settled else "; it will be delivered again",
                )
            if delivery.settled:
                if self._pause is not None:
                    self._pause.reset()
                return
            if self._pause is not None:
                self._pause.wait(self.stopping)
            current = self._transport.retry(current)


class _Seen:
    """An event seen live: nothing to settle."""

    settled = True

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __str__(self) -> str:
        return "a live event"


class _Watching(Generic[ItemT]):
    def __init__(self, body: Callable[[ItemT], bytes]) -> None:
        self._body = body

    def open(self, item: ItemT) -> _Seen:
        return _Seen(self._body(item))

    def retry(self, item: ItemT) -> ItemT | None:
        return None

    def release(self, item: ItemT) -> None:
        pass  # a live event is not kept for anyone


def watch_pool(
    name: str, handler: WatchHandler, body: Callable[[ItemT], bytes]
) -> HandlerPool[ItemT, _Seen]:
    """A one-thread pool running a watch handler on the body of each item, in order."""
    return HandlerPool(name, 1, lambda seen: handler(seen.body), _Watching(body))
