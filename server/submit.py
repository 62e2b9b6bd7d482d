"""Submission as one step that a caller cannot split: the job is recorded, then published, or its
record ends FAILED.

A client's deadline or cancellation cancels its RPC's coroutine at whatever await it has reached.
Recording and publishing therefore run in a task of their own that the RPC only waits on through
``asyncio.shield``: a caller that goes away stops waiting, not submitting.
"""

from __future__ import annotations

import asyncio
import logging

from brokers.base import Broker, Message
from brokers.errors import BrokerError
from mlgate import tracing
from mlgate.events import QUEUED_SEQ, event
from mlgate.metrics import JOBS_SUBMITTED, kind_label
from mlgate.settings import Settings
from mlgate.v1 import jobs_pb2
from server.hub import Hub
from server.jobstore.base import JobStore

__all__ = ["Submitter"]

log = logging.getLogger(__name__)


class Submitter:
    """Records and queues jobs; ``drain`` waits for the submissions still under way."""

    def __init__(self, settings: Settings, broker: Broker, store: JobStore, hub: Hub) -> None:
        self._settings = settings
        self._broker = broker
        self._store = store
        self._hub = hub
        self._running: set[asyncio.Task[None]] = set()

    async def submit(
        self, job: jobs_pb2.Job, queue: str, headers: tuple[tuple[str, str], ...]
    ) -> None:
        """Record ``job`` and publish it to ``queue``. Raises what went wrong if it was not
        queued: nothing was recorded, or the record ends FAILED."""
        # Stored and queued as read: fields this gateway does not know are no one's to keep.
        job.DiscardUnknownFields()
        task = asyncio.create_task(self._record_and_publish(job, queue, headers))
        self._running.add(task)
        task.add_done_callback(self._finished)
        await asyncio.shield(task)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Its caller has the error, or has gone; the job's record says FAILED either way.
            log.debug("submission failed: %s", task.exception())

    async def _record_and_publish(
        self, job: jobs_pb2.Job, queue: str, headers: tuple[tuple[str, str], ...]
    ) -> None:
        timeout = self._settings.publish_timeout

        def record_then_publish() -> Exception | None:
            # Record before publishing: a fast worker's first event must find the job in the
            # store. One thread hop for both; what failed decides what the record says.
            self._store.create(job)  # raises: nothing was recorded
            message = Message(job.id, job.SerializeToString(), tracing.inject(headers))
            try:
                with tracing.span("publish", job_id=job.id, queue=queue):
                    self._broker.publish(queue, message, timeout=timeout)
            except Exception as exc:
                return exc
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
                message=f"not queued: the job broker ({self._settings.broker}) did not take it; "
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
            log.error("job %s is recorded but neither queued nor FAILED: %s", job.id, also)
            return
        self._hub.notify(job.id)

    async def drain(self) -> None:
        """Wait until every submission under way is queued or failed (before closing the broker)."""
        if self._running:
            await asyncio.wait(set(self._running))
