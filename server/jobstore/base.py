"""The job store contract: job records and their event logs, shared by the gateway's servicers.

Recording is idempotent: an event is applied only if its seq is above the job's last one and the
job has not ended, so redelivered or late events can neither duplicate nor regress a job. A
redelivered event still raises the job's ``attempt``, the one thing it adds.

Finished jobs are deleted, with their events, ``retention`` seconds after they ended (``0`` keeps
them for ever). There is no sweeper thread: a write that finds a sweep due runs it, at most once
per ``min(retention, 10)`` seconds per store.

The outbox: ``create`` records a job with an *unpublished* mark, in the same write, so a job that
was recorded but never reached the broker (its gateway died in between) can be found and
published by any gateway. The mark is cleared by ``mark_published`` (many jobs in one write),
and by any event the store applies to the job (a worker reporting on it, a cancel, a failure),
since a job something has moved on needs no publishing. ``claim_unpublished`` returns whole jobs
(rows included) whose mark is older than a threshold and, in the same atomic step, renews their
marks: a claim is a lease of that many seconds, so two gateways never claim a job at once, and
a job whose claimer died before publishing it is claimed again once the lease has run out.
Publishing a claimed job more than once is harmless: workers drop a duplicate delivery. Marks
are times of the store's clock where it has one (PostgreSQL), else the gateway's.

Child jobs: a TRIAL or SHARD job names the SEARCH or SCORE job it belongs to in
``parent_job_id``, which every store indexes. ``children`` reads a parent's whole children from
that index; ``list`` pages through them with ``parent_job_id``, and otherwise leaves TRIAL and
SHARD jobs out unless ``kind`` asks for them (``CHILD_KINDS``), so a search's trials do not
flood a listing. A child may be created twice (a coordinator that restarts fans out again):
``create_if_absent`` says whether this call created it, so only that caller publishes it; the
other call changes nothing. Children expire like any job, by their own end time.
"""

from __future__ import annotations

import abc
import builtins
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from mlgate.events import is_terminal
from mlgate.store_errors import JobExists
from mlgate.v1 import jobs_pb2
from server.jobstore.records import summary
from server.jobstore.registry import ModelRegistry

__all__ = [
    "CHILD_KINDS",
    "DEFAULT_RETENTION",
    "JobStore",
    "Recorded",
    "SweepSchedule",
    "apply_event",
    "number_cancel",
    "recorded",
    "timestamp",
]

DEFAULT_RETENTION = 30 * 24 * 3600.0
#: The kinds a listing leaves out unless its ``kind`` or ``parent_job_id`` asks for them.
CHILD_KINDS = (jobs_pb2.JOB_KIND_TRIAL, jobs_pb2.JOB_KIND_SHARD)


def apply_event(job: jobs_pb2.Job, event: jobs_pb2.JobEvent) -> bool:
    """Apply ``event`` to ``job`` in place if it moves the job forward; whether it did."""
    if is_terminal(job.state):
        return False
    if event.seq <= job.last_event.seq:
        # A copy of an event recorded already, or a late one of an earlier attempt (each attempt
        # numbers its events above the last's): only a higher attempt number is news. Kept, so
        # an embedded restart that requeues the job goes on counting toward max_attempts.
        if event.attempt > job.attempt:
            job.attempt = event.attempt
            return True
        return False
    job.attempt = max(job.attempt, event.attempt)
    job.state = event.state
    job.update_time.CopyFrom(event.time)
    job.last_event.CopyFrom(event)
    return True


@dataclass(frozen=True)
class Recorded:
    """What recording an event did. ``job`` is the job's summary afterwards. ``logged`` is the
    event as it went into the job's log, whole (a prediction's results, a model's version),
    right after the log's event ``after_seq``: whoever has read the log up to ``after_seq`` can
    take it without reading the log again. It is None if the event only raised the job's
    attempt, which adds nothing to the log."""

    job: jobs_pb2.Job
    logged: jobs_pb2.JobEvent | None
    after_seq: int


def recorded(job: jobs_pb2.Job, after_seq: int) -> Recorded:
    """The Recorded for ``job``, the whole record as saved with its event, whose log ended at
    ``after_seq`` before (``job`` is summarised in place)."""
    logged = None
    if job.last_event.seq != after_seq:
        logged = jobs_pb2.JobEvent()
        logged.CopyFrom(job.last_event)  # the summary leaves out a prediction's results
    return Recorded(summary(job), logged, after_seq)


def number_cancel(job: jobs_pb2.Job, event: jobs_pb2.JobEvent) -> jobs_pb2.JobEvent:
    """Make ``event`` the CANCELLED event that follows ``job``'s last one: the next seq, and for a
    job a worker had started, the attempt and stage it was cancelled in."""
    event.seq = job.last_event.seq + 1
    if job.attempt and not is_terminal(job.state):
        last = job.last_event
        event.attempt = job.attempt
        event.stage = last.stage
        event.progress = last.progress
        stage = jobs_pb2.Stage.Name(last.stage).removeprefix("STAGE_").lower().replace("_", " ")
        where = f"while {stage}" if last.stage else "before it started"
        event.message = f"{event.message} {where} (attempt {job.attempt})".strip()
    return event


def timestamp(ns: int | None) -> Timestamp | None:
    """``ns`` (nanoseconds since the epoch, as stores keep create times) as a Timestamp."""
    if ns is None:
        return None
    stamp = Timestamp()
    stamp.FromNanoseconds(ns)
    return stamp


class SweepSchedule:
    """When a store should next delete its expired jobs; one sweep at a time."""

    def __init__(self, retention: float) -> None:
        self.retention = retention
        self._every = min(retention, 10.0)
        self._next = 0.0
        self._lock = threading.Lock()

    def run_if_due(self, sweep: Callable[[], None], transient: tuple[type[Exception], ...]) -> None:
        """Run ``sweep`` if retention is on and it is due; a ``transient`` error leaves it to a
        later write, as the write that triggered it has succeeded already."""
        if self.retention <= 0 or time.monotonic() < self._next:
            return
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._next = time.monotonic() + self._every
            sweep()
        except transient:
            pass
        finally:
            self._lock.release()


class JobStore(abc.ABC):
    """Job records and event logs. Methods are blocking and thread-safe."""

    def create(self, job: jobs_pb2.Job) -> None:
        """Store a new job; ``job.last_event`` is its first event (QUEUED, seq 1).
        A prediction's rows are kept apart from the record (``records.split_rows``). Raises
        ``JobExists`` if a job with its id is stored already (which is left as it was)."""
        if not self.create_if_absent(job):
            raise JobExists(f"job {job.id} already exists")

    @abc.abstractmethod
    def create_if_absent(self, job: jobs_pb2.Job) -> bool:
        """``create``, unless a job with ``job.id`` is stored already: then nothing is written
        (the stored job, its unpublished mark and its events are left as they are) and it
        returns False. True if this call created the job, atomically: of callers creating one
        id at once, in one gateway or several, exactly one is told True. Whoever is told True
        publishes the job; the outbox publishes it if that caller dies first."""

    @abc.abstractmethod
    def get(self, job_id: str) -> jobs_pb2.Job | None:
        """The whole job, rows included, or None if there is none with that id."""

    @abc.abstractmethod
    def list(
        self, *, kind: int, state: int, page_size: int, page_token: str, parent_job_id: str = ""
    ) -> tuple[builtins.list[jobs_pb2.Job], str]:
        """Job summaries (``records.summary``) newest first, filtered by kind and state when
        non-zero; and the next page's token. With ``parent_job_id``, only that job's children
        (of any kind unless ``kind`` says); without it, jobs of ``CHILD_KINDS`` only if ``kind``
        is one of them. Every combination is read from an index."""

    @abc.abstractmethod
    def children(self, parent_job_id: str) -> builtins.list[jobs_pb2.Job]:
        """The whole jobs (rows, last event and its result included) whose ``parent_job_id`` is
        ``parent_job_id``, oldest first (by create time, then id); read from the parent's index
        in one query, however many other jobs the store holds. Empty for an unknown parent."""

    @abc.abstractmethod
    def record(self, event: jobs_pb2.JobEvent) -> Recorded | None:
        """Apply an event; what it changed (``Recorded``), or None if it was a duplicate, stale or
        for an unknown or ended job; may sweep expired jobs. A training job that succeeds with a
        ``model_name`` registers its model as that name's next version in the same transaction;
        the recorded terminal event (the job's ``last_event``) then carries the name and version."""

    def record_all(self, events: Sequence[jobs_pb2.JobEvent]) -> builtins.list[Recorded | None]:
        """``record`` for each event, in order: what each did. A store whose writes wait for a
        disk writes them in one transaction, so they wait once; all or none of them are
        recorded then. Raises what ``record`` raises."""
        return [self.record(event) for event in events]

    @property
    @abc.abstractmethod
    def registry(self) -> ModelRegistry:
        """Model names, versions, aliases and metadata, kept with the job records."""

    @abc.abstractmethod
    def events(self, job_id: str, after_seq: int) -> builtins.list[jobs_pb2.JobEvent]:
        """The job's recorded events with seq above ``after_seq``, in order."""

    @abc.abstractmethod
    def cancel(self, job_id: str, event: jobs_pb2.JobEvent) -> jobs_pb2.Job | None:
        """Atomically end a job that has not ended with ``event`` (its seq is set to the next one).
        Returns the job's summary as it is afterwards, or None if there is no such job."""

    @abc.abstractmethod
    def mark_published(self, job_ids: Sequence[str]) -> None:
        """Clear the unpublished marks of ``job_ids`` (unknown ids are ignored), in one write."""

    @abc.abstractmethod
    def claim_unpublished(
        self, older_than_seconds: float, limit: int
    ) -> builtins.list[jobs_pb2.Job]:
        """Whole jobs whose unpublished mark is at least ``older_than_seconds`` old: the
        ``limit`` oldest marks, in no particular order; atomically renews their marks (a lease:
        see the module's docstring)."""

    @abc.abstractmethod
    def oldest_queued(self, kind: int) -> Timestamp | None:
        """The create time of the oldest job of ``kind`` in state QUEUED, or None if there is
        none; read from an index (a few reads however many jobs the store holds), as a metrics
        scrape asks for it on every scrape.

        QUEUED means no worker has reported on the job yet: recorded and waiting for one (or
        still being published). It is not every job the broker holds: a job whose worker died
        and that went back to the queue for another attempt stays RUNNING in the store, so it
        is not counted, however long it waits again."""

    @abc.abstractmethod
    def ping(self) -> None:
        """A cheap round trip; raises if the store cannot answer now (for health and status)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections."""
