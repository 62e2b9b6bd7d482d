"""The workers as a gateway hears them: by their heartbeats (``workers.heartbeat``), through the
broker, whichever broker it is.

A worker is alive from its first heartbeat until a whole heartbeat interval (the one its
heartbeats declare) passes without another: then it is counted out (``mlgate_worker_losses``),
and each attempt its last heartbeat said it was running gets an AWAITING_RETRY event, "the worker
running attempt 1 stopped answering", so the job does not go on showing a fit that no longer runs
until the broker delivers it again. Every gateway hears every worker and sends the same event;
its copies share a seq and one is recorded. A worker that says it is stopping is counted out at
once, without that event: its jobs went back to the broker in the order it stops. While the
gateway's own broker is away it hears nobody, so it counts nobody out until each worker has had
a whole interval to be heard again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from brokers.base import Broker, Subscription
from brokers.errors import BrokerError
from mlgate.events import retry_note, stopped_answering
from mlgate.metrics import JOBS_RUNNING, WORKER_LOSSES, kind_label
from mlgate.v1 import jobs_pb2, status_pb2

__all__ = ["Heartbeats"]

log = logging.getLogger(__name__)

# Until a worker has been heard, the interval a gateway allows for the first heartbeats (the
# workers' default MLGATE_HEARTBEAT_SECONDS).
_FIRST_INTERVAL = 6.0


@dataclass
class _Heard:
    worker: status_pb2.Worker
    heard: float
    deadline: float


class Heartbeats:
    """The workers alive, by their heartbeats; ``start`` listens, ``stop`` stops."""

    def __init__(
        self,
        broker: Broker,
        *,
        publish_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._broker = broker
        self._publish_timeout = publish_timeout
        self._clock = clock
        self._workers: dict[str, _Heard] = {}
        self._changed = threading.Condition()
        self._stopping = False
        self._started = clock()
        self._longest = _FIRST_INTERVAL
        self._subscription: Subscription | None = None
        self._sweeper: threading.Thread | None = None

    def start(self) -> None:
        self._started = self._clock()
        self._stopping = False
        self._sweeper = threading.Thread(target=self._sweep, name="heartbeats", daemon=True)
        self._sweeper.start()
        self._subscription = self._broker.watch_heartbeats(self._on_beat)

    def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.cancel(5.0)
            self._subscription = None
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._sweeper is not None:
            self._sweeper.join()
            self._sweeper = None

    def workers(self) -> list[status_pb2.Worker]:
        """Every worker alive, with the seconds since it was last heard; by host, then pid."""
        now = self._clock()
        with self._changed:
            heard = list(self._workers.values())
        found = []
        for entry in heard:
            worker = status_pb2.Worker()
            worker.CopyFrom(entry.worker)
            worker.heartbeat_age_seconds = max(0.0, now - entry.heard)
            found.append(worker)
        return sorted(found, key=lambda w: (w.host, w.pid, w.id))

    def alive(self, consumers: int) -> int:
        """How many workers are alive. Until every worker has had an interval to be heard, at
        least ``consumers`` (the broker's count of consumers on a work queue)."""
        with self._changed:
            count = len(self._workers)
            warm = self._clock() - self._started >= self._longest
        return count if warm else max(count, consumers)

    def _on_beat(self, body: bytes) -> None:
        try:
            beat = status_pb2.Worker.FromString(body)
        except DecodeError:
            log.debug("a heartbeat that is not one (%d bytes) ignored", len(body))
            return
        now = self._clock()
        with self._changed:
            if beat.stopping:
                gone = self._workers.pop(beat.id, None)
                joined = False
            else:
                interval = beat.heartbeat_interval_seconds or _FIRST_INTERVAL
                self._longest = max(self._longest, interval)
                joined = beat.id not in self._workers
                self._workers[beat.id] = _Heard(beat, now, now + interval)
            self._changed.notify()
        if beat.stopping:
            if gone is not None:
                log.info("worker %s (%s, pid %d) stopped", beat.id, beat.host, beat.pid)
        elif joined:
            log.info("worker %s (%s, pid %d) is alive", beat.id, beat.host, beat.pid)
        self._count_running()

    def _sweep(self) -> None:
        while True:
            with self._changed:
                while not self._stopping:
                    now = self._clock()
                    due = min((w.deadline for w in self._workers.values()), default=None)
                    if due is not None and due <= now:
                        break
                    self._changed.wait(None if due is None else due - now)
                if self._stopping:
                    return
                lost = self._lost(self._clock())
            for entry in lost:
                self._counted_out(entry)
            self._count_running()

    def _lost(self, now: float) -> list[_Heard]:
        """The workers whose deadline has passed, taken out (with the lock held)."""
        if not self._broker.healthy():
            # Nobody can be heard now: each worker gets a whole interval once the broker is back.
            for entry in self._workers.values():
                interval = entry.worker.heartbeat_interval_seconds or _FIRST_INTERVAL
                entry.deadline = max(entry.deadline, now + interval)
            return []
        lost = [entry for entry in self._workers.values() if entry.deadline <= now]
        for entry in lost:
            del self._workers[entry.worker.id]
        return lost

    def _counted_out(self, entry: _Heard) -> None:
        worker = entry.worker
        WORKER_LOSSES.inc()
        running = ", ".join(f"{r.job_id} (attempt {r.attempt})" for r in worker.running)
        log.warning(
            "worker %s (%s, pid %d) stopped answering: no heartbeat for %g s%s",
            worker.id,
            worker.host,
            worker.pid,
            worker.heartbeat_interval_seconds,
            f"; the broker delivers its jobs again: {running}" if running else "",
        )
        for job in worker.running:
            note = retry_note(
                job.job_id,
                job.attempt,
                worker.max_attempts,
                stopped_answering(job.attempt),
                progress=job.progress,
            )
            try:
                self._broker.publish_event(note.SerializeToString(), timeout=self._publish_timeout)
            except BrokerError as exc:
                log.warning("job %s: its retry note was not published: %s", job.job_id, exc)

    def _count_running(self) -> None:
        with self._changed:
            running = Counter(
                kind_label(job.kind) for w in self._workers.values() for job in w.worker.running
            )
        for kind in (jobs_pb2.JOB_KIND_TRAIN, jobs_pb2.JOB_KIND_PREDICT):
            label = kind_label(kind)
            JOBS_RUNNING.labels(label).set(running[label])
