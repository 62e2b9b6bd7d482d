"""The gateway's side of the outbox (see ``server.jobstore.base``): no job recorded by a gateway
stays QUEUED because that gateway died before it reached the broker.

* **Marks.** A submission whose publish went through hands its job's id to ``published``; the
  ids are cleared in the job store in batches, one ``mark_published`` every ``FLUSH_EVERY``
  seconds, off the request path. A batch lost with its gateway costs a second publish of those
  jobs at most (workers drop a duplicate delivery, and the store a duplicate event); most of
  their marks are cleared anyway by the first event a worker reports.
* **Sweeps.** Every gateway, every few seconds, claims the jobs marked longer than ``after``
  seconds ago (by then no publish of theirs is still under way: ``after`` is above the publish
  timeout) and publishes each with ``publish_job``, as a submission does, then marks them. A job
  that cannot be published (the broker is out of reach) is tried again when its lease runs out;
  once ``give_up`` seconds have passed since it was submitted, it ends FAILED UNAVAILABLE, saying
  it never reached the broker.
* **Ends.** A submission that was not queued ends its job FAILED (``Submitter``); if the job store
  could not take that either, ``end_later`` keeps trying, so the record comes to say what its
  client was told rather than the job being published by a sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable

from brokers import Broker
from brokers.errors import BrokerError
from mlgate.events import event
from mlgate.metrics import job_ended
from mlgate.store_errors import JobStoreError
from mlgate.v1 import jobs_pb2
from server.fanout import is_parent
from server.hub import Hub
from server.jobstore.base import JobStore
from server.submit import publish_job, stored_model_sha
from storage.models import ModelRepository

__all__ = ["FLUSH_EVERY", "Outbox"]

log = logging.getLogger(__name__)

#: Seconds between two batches of marks: far below any ``after``, and few writes per second.
FLUSH_EVERY = 0.15
# Jobs one claim takes; a full claim is followed by another at once.
_CLAIM_LIMIT = 100
# Sweeps come at most this many seconds apart (less with a short ``after``).
_SWEEP_EVERY = 5.0
# Ids held while the job store cannot take a batch; past this, the oldest are left to sweeps.
_MAX_PENDING = 100_000


class Outbox:
    """Marks published jobs in batches, publishes what was never published, and ends what cannot
    be. ``published`` and ``end_later`` may be called from any thread; the rest on the loop."""

    def __init__(
        self,
        broker: Broker,
        store: JobStore,
        models: ModelRepository,
        hub: Hub,
        *,
        after: float,
        give_up: float,
        publish_timeout: float,
    ) -> None:
        self._broker = broker
        self._store = store
        self._models = models
        self._hub = hub
        self._after = after
        self._give_up = give_up
        self._publish_timeout = publish_timeout
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._ends: dict[str, jobs_pb2.JobEvent] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._also: list[Callable[[], Awaitable[None]]] = []

    def also_sweep(self, sweep: Callable[[], Awaitable[None]]) -> None:
        """Run ``sweep`` after each of this outbox's sweeps (``server.fanout``'s parents)."""
        self._also.append(sweep)

    def published(self, job_id: str) -> None:
        """``job_id`` is on the broker: clear its mark with the next batch."""
        with self._lock:
            self._pending.append(job_id)

    def end_later(self, job_id: str, failed: jobs_pb2.JobEvent) -> None:
        """Record ``failed`` (a job's FAILED event) as soon as the job store takes it."""
        with self._lock:
            self._ends[job_id] = failed

    def start(self) -> None:
        """Start flushing marks and sweeping, on the running loop."""
        self._tasks = [
            asyncio.create_task(self._every(FLUSH_EVERY, self.flush)),
            asyncio.create_task(self._every(min(self._after / 2, _SWEEP_EVERY), self.sweep)),
        ]

    async def stop(self) -> None:
        """Stop sweeping, then flush what is held, once."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.flush()

    async def _every(self, seconds: float, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            # Jittered, so gateways started together do not sweep in step.
            await asyncio.sleep(seconds * random.uniform(0.75, 1.0))
            try:
                await step()
            except Exception:
                log.exception("outbox: unexpected error")

    async def flush(self) -> None:
        """Clear the marks of the jobs published since the last flush, and record held ends."""
        with self._lock:
            ids, self._pending = self._pending, []
            ends = list(self._ends.items())
        if ids:
            try:
                await asyncio.to_thread(self._store.mark_published, ids)
            except JobStoreError as exc:
                log.debug("outbox: %d marks kept for the next batch: %s", len(ids), exc)
                with self._lock:
                    self._pending[:0] = ids[-_MAX_PENDING:]
                    del self._pending[:-_MAX_PENDING]
        for job_id, failed in ends:
            try:
                ended = await asyncio.to_thread(self._store.cancel, job_id, failed)
            except JobStoreError:
                return  # still away: the next flush tries again
            with self._lock:
                self._ends.pop(job_id, None)
            if ended is not None:
                self._hub.notify(job_id)

    async def sweep(self) -> None:
        """Publish the jobs recorded and never published, or end those past ``give_up``."""
        while True:
            try:
                claimed, ended = await asyncio.to_thread(self._sweep_once)
            except JobStoreError as exc:
                log.warning("outbox: the job store cannot be swept now: %s", exc)
                return
            for job_id in ended:
                self._hub.notify(job_id)
            if claimed < _CLAIM_LIMIT:
                break
        for also in self._also:
            await also()

    def _sweep_once(self) -> tuple[int, list[str]]:
        """One claim: how many jobs it took, and the ids of those it ended FAILED."""
        claimed = self._store.claim_unpublished(self._after, _CLAIM_LIMIT)
        published: list[str] = []
        ended: list[str] = []
        unreachable: BrokerError | None = None
        for job in claimed:
            if is_parent(job.kind):
                published.append(job.id)  # no queue takes it: its coordinator does (fanout)
                continue
            if unreachable is None:
                try:
                    sha = stored_model_sha(self._models, job)
                    publish_job(self._broker, job, self._publish_timeout, model_sha=sha)
                    published.append(job.id)
                    continue
                except BrokerError as exc:
                    # The rest would wait out the same outage, one publish timeout each.
                    unreachable = exc
            waited = time.time() - job.create_time.ToNanoseconds() / 1e9
            if waited >= self._give_up and self._end(job):
                ended.append(job.id)
        if published:
            self._store.mark_published(published)
            log.info(
                "outbox: published %d jobs recorded but not known to be queued (a gateway "
                "stopped in between): %s",
                len(published),
                " ".join(published[:10]) + (" ..." if len(published) > 10 else ""),
            )
        if unreachable is not None:
            log.warning(
                "outbox: %d jobs recorded but never published wait for the broker: %s",
                len(claimed) - len(published) - len(ended),
                unreachable,
            )
        return len(claimed), ended

    def _end(self, job: jobs_pb2.Job) -> bool:
        """End ``job`` FAILED: it never reached the broker. Whether this did end it."""
        message = (
            f"not queued: the job never reached the job broker ({self._broker.name}) within "
            f"{self._give_up:g} s of its submission; submit it again"
        )
        error = jobs_pb2.JobError(code="UNAVAILABLE", message=message)
        failed = event(job.id, 0, jobs_pb2.JOB_STATE_FAILED, error=error, message=message)
        done = self._store.cancel(job.id, failed)  # numbers ``failed`` as the next event
        if done is None or done.last_event.seq != failed.seq:
            return False  # it has ended meanwhile
        log.warning("job %s: %s", job.id, message)
        job_ended(done)
        return True
