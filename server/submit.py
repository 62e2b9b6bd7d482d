"""Putting jobs on the broker's queues: ``publish_job`` is the one way a job is queued (its
message built by ``job_message``), for a submission, for a job queued again on start and for one
the outbox finds never published (``server.outbox``).

Submission is one step that a caller cannot split: the job is recorded, then published, or its
record ends FAILED. A client's deadline or cancellation cancels its RPC's coroutine at whatever
await it has reached. Recording and publishing therefore run in a task of their own that the RPC
only waits on through ``asyncio.shield``: a caller that goes away stops waiting, not submitting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from brokers import PREDICT_QUEUE, PRIOR_ATTEMPTS_HEADER, TRAIN_QUEUE, Broker, Message
from brokers.errors import BrokerError
from mlgate import tracing
from mlgate.errors import MLGateError
from mlgate.events import QUEUED_SEQ, event
from mlgate.jobs import MODEL_SHA_HEADER
from mlgate.metrics import JOBS_SUBMITTED, kind_label
from mlgate.v1 import jobs_pb2
from server.hub import Hub
from server.jobstore.base import CHILD_KINDS, JobStore
from storage.errors import StorageError
from storage.models import ModelRepository

if TYPE_CHECKING:
    from server.outbox import Outbox

__all__ = ["Submitter", "job_message", "publish_job", "requeue_unfinished", "stored_model_sha"]

log = logging.getLogger(__name__)

_TRAIN_KINDS = (jobs_pb2.JOB_KIND_TRAIN, jobs_pb2.JOB_KIND_TRIAL)
# Coordinated by the gateways (server.fanout), never queued.
_PARENT_KINDS = (jobs_pb2.JOB_KIND_SEARCH, jobs_pb2.JOB_KIND_SCORE)
_UNFINISHED = (jobs_pb2.JOB_STATE_QUEUED, jobs_pb2.JOB_STATE_RUNNING)


def job_message(job: jobs_pb2.Job, *, model_sha: str = "", prior_attempts: int = 0) -> Message:
    """The message that carries ``job`` to a worker, with the current trace context.

    ``model_sha`` (a predict job's) is the digest of the artifact the gateway checked the input
    against; ``prior_attempts`` counts deliveries the job had in an earlier process."""
    headers: tuple[tuple[str, str], ...] = ()
    if model_sha:
        headers += ((MODEL_SHA_HEADER, model_sha),)
    if prior_attempts:
        headers += ((PRIOR_ATTEMPTS_HEADER, str(prior_attempts)),)
    return Message(job.id, job.SerializeToString(), tracing.inject(headers))


def publish_job(
    broker: Broker,
    job: jobs_pb2.Job,
    timeout: float,
    *,
    model_sha: str = "",
    prior_attempts: int = 0,
) -> None:
    """Put ``job`` on its queue in a "publish" span, whose context the message carries: the
    worker's spans join the trace of the request that submitted the job, or of the restart
    that queued it again."""
    # A search's trials are fits: they share the train queue's workers and prefetch.
    queue = TRAIN_QUEUE if job.kind in _TRAIN_KINDS else PREDICT_QUEUE
    with tracing.span("publish", job_id=job.id, queue=queue):
        message = job_message(job, model_sha=model_sha, prior_attempts=prior_attempts)
        broker.publish(queue, message, timeout=timeout)


def stored_model_sha(models: ModelRepository, job: jobs_pb2.Job) -> str:
    """The artifact digest the message of a recorded predict job carries when it is queued
    again; "" for a training job, or a model that cannot be read now (the worker checks the
    model itself, and fails the job saying so if it is gone)."""
    if job.kind != jobs_pb2.JOB_KIND_PREDICT:
        return ""
    with contextlib.suppress(MLGateError, StorageError):
        return models.get(job.predict.model_id).sha256
    return ""


class Submitter:
    """Records and queues jobs; ``drain`` waits for the submissions still under way.

    ``after_record`` runs between recording a job and publishing it: a test's fault point
    (``server.main``), None otherwise."""

    def __init__(
        self,
        broker: Broker,
        store: JobStore,
        hub: Hub,
        outbox: Outbox,
        *,
        publish_timeout: float,
        after_record: Callable[[jobs_pb2.Job], None] | None = None,
    ) -> None:
        self._broker = broker
        self._store = store
        self._hub = hub
        self._outbox = outbox
        self._publish_timeout = publish_timeout
        self._after_record = after_record
        self._running: set[asyncio.Task[None]] = set()

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    async def submit(self, job: jobs_pb2.Job, *, model_sha: str = "") -> None:
        """Record ``job`` and queue it (see ``job_message``). Raises what went wrong if it was
        not queued: nothing was recorded, or the record ends FAILED."""
        # Stored and queued as read: fields this gateway does not know are no one's to keep.
        job.DiscardUnknownFields()
        task = asyncio.create_task(self._record_and_publish(job, model_sha))
        self._running.add(task)
        task.add_done_callback(self._finished)
        await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Its caller has the error, or has gone; the job's record says FAILED either way.
            log.debug("submission failed: %s", task.exception())

    async def _record_and_publish(self, job: jobs_pb2.Job, model_sha: str) -> None:
        def record_then_publish() -> Exception | None:
            # Record before publishing: a fast worker's first event must find the job in the
            # store. One thread hop for both; what failed decides what the record says.
            self._store.create(job)  # raises: nothing was recorded
            if self._after_record is not None:
                self._after_record(job)
            try:
                publish_job(self._broker, job, self._publish_timeout, model_sha=model_sha)
            except Exception as exc:
                return exc
            # Its outbox mark is cleared with the next batch, off this request's path.
            self._outbox.published(job.id)
            return None

        failed = await asyncio.to_thread(record_then_publish)
        if failed is not None:
            await self._fail(job, failed)
            raise failed
        JOBS_SUBMITTED.labels(kind_label(job.kind)).inc()

    async def _fail(self, job: jobs_pb2.Job, exc: Exception) -> None:
        """End the record of a job that was not queued, and wake its streams."""
        # The record says what happened; the broker's own text (addresses) is logged by the
        # status interceptor, never stored where clients read it.
        if isinstance(exc, BrokerError):
            error = jobs_pb2.JobError(
                code="UNAVAILABLE",
                message=f"not queued: the job broker ({self._broker.name}) did not take it; "
                "submit it again",
            )
        else:
            error = jobs_pb2.JobError(
                code="INTERNAL", message="not queued: the gateway failed; submit it again"
            )
        failed = event(job.id, QUEUED_SEQ + 1, jobs_pb2.JOB_STATE_FAILED, error=error)
        try:
            await asyncio.to_thread(self._store.cancel, job.id, failed)
        except Exception as also:
            # Ended once the store is back, or, should this gateway die first, published by
            # another gateway's outbox sweep: never left QUEUED.
            log.error("job %s is recorded but neither queued nor FAILED yet: %s", job.id, also)
            self._outbox.end_later(job.id, failed)
            return
        self._hub.notify(job.id)

    async def drain(self) -> None:
        """Wait until every submission under way is queued or failed (before closing the broker)."""
        if self._running:
            await asyncio.wait(set(self._running))


def requeue_unfinished(
    broker: Broker, store: JobStore, models: ModelRepository, publish_timeout: float
) -> int:
    """Queue again the jobs the job store says are QUEUED or RUNNING; how many there were.

    For a broker that does not keep jobs (``Broker.keeps_jobs``): its queues died with the
    previous process while the job store survived, so the store is the only record of them.
    Their outbox marks are cleared, so no sweep publishes them a second time."""
    requeued = 0
    # A listing without a kind leaves children out: they are listed by their own kinds.
    wanted = [(kind, state) for kind in (0, *CHILD_KINDS) for state in _UNFINISHED]
    for kind, state in wanted:
        token = ""
        while True:
            listed, token = store.list(kind=kind, state=state, page_size=500, page_token=token)
            published = []
            for summary in listed:
                job = store.get(summary.id)  # the whole job: listings leave out rows
                if job is None or job.kind in _PARENT_KINDS:
                    continue
                # A job a worker had started counts that delivery: attempts go on from there.
                prior = max(job.attempt, job.last_event.attempt)
                sha = stored_model_sha(models, job)
                publish_job(broker, job, publish_timeout, model_sha=sha, prior_attempts=prior)
                published.append(job.id)
            store.mark_published(published)
            requeued += len(published)
            if not token:
                break
    return requeued
