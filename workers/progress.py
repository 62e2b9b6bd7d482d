"""Progress at a pace a person can follow: at most one RUNNING event per job every ``interval``.

Every event a worker publishes is carried by the broker to every gateway (twice: the durable and
the live path), recorded in the job store, read back and streamed to each watcher; for a job of a
tenth of a second its four stage events cost more than everything else around the fit. A stage that
ends before anyone could see it need not be published: an attempt's first progress event goes out
at once when the broker does not keep jobs (the embedded one: a restart counts attempts by it), or
``first_after`` seconds into the attempt when the broker counts deliveries itself (a job that ends
sooner, such as a seed model's, publishes none: its outcome says it ran); later ones at most every
``interval``, the latest winning; one still held when the job ends is dropped, as the terminal
event says more. A held event is published when its turn comes even if the job is busy (a long
fit), by the pacer's thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["PROGRESS_INTERVAL", "Pace", "Pacer"]

log = logging.getLogger(__name__)

#: Seconds between two progress events of one job: a few a second at most.
PROGRESS_INTERVAL = 0.25

Publish = Callable[[bytes], None]


class Pace:
    """One attempt's progress events: published at once when their turn has come, else held."""

    def __init__(self, pacer: Pacer, publish: Publish, first_after: float = 0.0) -> None:
        self._pacer = pacer
        self._publish = publish
        self._lock = threading.Lock()
        # As if an event had gone out just so long ago that the first one's turn comes
        # ``first_after`` seconds from now.
        self._last: float | None = (
            time.monotonic() - pacer.interval + first_after if first_after > 0 else None
        )
        self._held: bytes | None = None
        self._scheduled = False
        self._closed = False

    def offer(self, body: bytes) -> None:
        """Publish ``body`` now if this attempt's turn has come, else hold it (replacing any
        event held before it); ``publish``'s errors reach the caller only when sent now."""
        with self._lock:
            if self._closed:
                return
            now = time.monotonic()
            if self._last is None or now - self._last >= self._pacer.interval:
                self._held = None
                self._last = now
                self._publish(body)
                return
            self._held = body
            if self._scheduled:
                return
            self._scheduled = True
            due = self._last + self._pacer.interval
        self._pacer.schedule(due, self._flush)

    def drop(self) -> None:
        """Drop what is held: the attempt's outcome is being published, which says more."""
        with self._lock:
            self._held = None

    def close(self) -> None:
        """The attempt has ended: drop what is held, publish nothing more."""
        with self._lock:
            self._closed = True
            self._held = None

    def _flush(self) -> None:
        with self._lock:
            self._scheduled = False
            body, self._held = self._held, None
            if body is None or self._closed:
                return
            self._last = time.monotonic()
            self._publish(body)


class Pacer:
    """The thread that publishes held progress events when their turn comes."""

    def __init__(self, interval: float = PROGRESS_INTERVAL) -> None:
        self.interval = interval
        self._due: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()  # ties never compare the callables
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def pace(self, publish: Publish, first_after: float = 0.0) -> Pace:
        """Pacing for one attempt's progress events, published by ``publish``; none before
        ``first_after`` seconds from now."""
        return Pace(self, publish, first_after)

    def start(self) -> None:
        with self._changed:
            self._stopping = False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        """Stop; held events are dropped (their jobs go back to the broker or have ended)."""
        with self._changed:
            self._stopping = True
            self._due.clear()
            self._changed.notify()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    def schedule(self, due: float, flush: Callable[[], None]) -> None:
        with self._changed:
            heapq.heappush(self._due, (due, next(self._order), flush))
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._stopping:
                    wait = self._due[0][0] - time.monotonic() if self._due else None
                    if wait is not None and wait <= 0:
                        break
                    self._changed.wait(wait)
                if self._stopping:
                    return
                _, _, flush = heapq.heappop(self._due)
            try:
                flush()
            except Exception as exc:  # progress is informative: log it and go on
                log.warning("a progress event was not published: %s", exc)
