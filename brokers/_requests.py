"""Request/reply, written once for every broker: a backend moves requests and replies, this
decides what happens to them.

* Serving: a request runs on a ``HandlerPool`` thread like a job, but there is nothing to settle:
  it is answered (``answer``) or, past its deadline, dropped unanswered (``drop``). A handler that
  raises sends nothing; the pool logs it and the caller's deadline ends the wait.
* Requesting: ``Outstanding`` remembers the requests sent and not yet answered, so a backend that
  loses its reply path (its connection) fails them at once with ``BrokerUnavailable`` instead of
  leaving their callers to wait out their deadlines.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from brokers._delivery import HandlerPool, Transport
from brokers.base import IncomingRequest, Reply, ReplyHandler, RequestHandler

__all__ = ["Outstanding", "ServedRequest", "request_pool"]

ItemT = TypeVar("ItemT")


class ServedRequest:
    """One request as a serving pool runs it. Always "settled": a request is never retried."""

    settled = True

    def __init__(
        self,
        incoming: IncomingRequest,
        answer: Callable[[bytes], None],
        drop: Callable[[], None],
    ) -> None:
        self.incoming = incoming
        self.answer = answer
        self.drop = drop

    def __str__(self) -> str:
        return f"request {self.incoming.request.correlation_id}"


def request_pool(
    name: str,
    concurrency: int,
    handler: RequestHandler,
    transport: Transport[ItemT, ServedRequest],
    *,
    on_room: Callable[[], None] | None = None,
) -> HandlerPool[ItemT, ServedRequest]:
    """A pool answering each request with ``handler`` unless its deadline has passed."""

    def run(served: ServedRequest) -> None:
        if served.incoming.request.deadline <= time.time():
            served.drop()  # nobody waits for it any more
            return
        try:
            body = handler(served.incoming)
        except BaseException:
            served.drop()
            raise
        served.answer(body)

    return HandlerPool(name, max(1, concurrency), run, transport, on_room=on_room)


class Outstanding:
    """The requests a requester sent and has no reply for yet, with their deadlines."""

    _PRUNE_EVERY = 256

    def __init__(self, on_reply: ReplyHandler) -> None:
        self._on_reply = on_reply
        self._lock = threading.Lock()
        self._deadlines: dict[str, float] = {}
        self._added = 0

    def add(self, correlation_id: str, deadline: float) -> None:
        with self._lock:
            self._deadlines[correlation_id] = deadline
            self._added += 1
            if self._added % self._PRUNE_EVERY == 0:
                # Requests whose reply never came (the worker died): their callers gave up.
                now = time.time()
                for key in [k for k, d in self._deadlines.items() if d < now]:
                    del self._deadlines[key]

    def reply(self, reply: Reply) -> None:
        """Pass on ``reply`` if its request is outstanding (a late or stray one is dropped)."""
        with self._lock:
            known = self._deadlines.pop(reply.correlation_id, None) is not None
        if known:
            self._on_reply(reply)

    def fail(self, correlation_id: str, error: Exception) -> None:
        self.reply(Reply(correlation_id, error=error))

    def fail_all(self, error: Exception) -> None:
        """The reply path is gone: no reply to anything sent so far will arrive."""
        with self._lock:
            lost, self._deadlines = self._deadlines, {}
        now = time.time()
        for correlation_id, deadline in lost.items():
            if deadline >= now:
                self._on_reply(Reply(correlation_id, error=error))
