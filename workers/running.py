"""What a worker keeps in memory about jobs: those it is running (which its heartbeat reports),
those cancelled or recorded lately, and why an earlier attempt at a job ended."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from mlgate.v1 import jobs_pb2, status_pb2
from workers.attempt_events import AttemptEvents

__all__ = ["Cancelled", "Recent", "RetryReasons", "RunningJobs"]

V = TypeVar("V")


class Cancelled(Exception):
    """The job was cancelled while it ran."""


class _Bounded(Generic[V]):
    """The latest ``size`` entries by job id, oldest dropped first; safe across threads."""

    def __init__(self, size: int = 10_000) -> None:
        self._items: OrderedDict[str, V] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def put(self, job_id: str, value: V) -> None:
        with self._lock:
            self._items[job_id] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def get(self, job_id: str) -> V | None:
        with self._lock:
            return self._items.get(job_id)


class Recent(_Bounded[None]):
    """A bounded set of job ids: recently cancelled, or recorded."""

    def add(self, job_id: str) -> None:
        self.put(job_id, None)

    def __contains__(self, job_id: object) -> bool:
        with self._lock:
            return job_id in self._items


class RetryReasons(_Bounded[tuple[int, str]]):
    """Why attempts ended without an outcome, from the AWAITING_RETRY events the worker sees go by
    (sent by a gateway that stopped hearing a worker, or by the worker whose fit process died)."""

    def learn(self, seen: jobs_pb2.JobEvent) -> None:
        if seen.stage == jobs_pb2.STAGE_AWAITING_RETRY and seen.retry_reason:
            self.put(seen.job_id, (seen.attempt, seen.retry_reason))

    def before(self, job_id: str, attempt: int) -> str:
        """Why the attempt before ``attempt`` ended, if this worker heard; else ""."""
        known = self.get(job_id)
        return known[1] if known is not None and known[0] == attempt - 1 else ""


class RunningJobs:
    """The attempts a worker is running now, as its heartbeat describes them."""

    def __init__(self) -> None:
        self._running: dict[tuple[str, int], tuple[jobs_pb2.Job, Timestamp, AttemptEvents]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def track(self, job: jobs_pb2.Job, attempt: int, events: AttemptEvents) -> Iterator[None]:
        """Count the attempt as running while the block runs."""
        started = Timestamp()
        started.GetCurrentTime()
        key = (job.id, attempt)
        with self._lock:
            self._running[key] = (job, started, events)
        try:
            yield
        finally:
            with self._lock:
                self._running.pop(key, None)

    def describe(self) -> list[status_pb2.RunningJob]:
        with self._lock:
            running = list(self._running.items())
        return [
            status_pb2.RunningJob(
                job_id=job_id,
                kind=job.kind,
                attempt=attempt,
                stage=events.stage,  # type: ignore[arg-type]
                progress=events.progress,
                start_time=started,
            )
            for (job_id, attempt), (job, started, events) in running
        ]
