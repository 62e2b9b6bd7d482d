"""Records the workers' events in the job store and wakes the streams that watch them.

Events arrive by two paths: the durable channel (shared by the gateways, kept while none runs) and
the live one (every gateway sees every event). Both record idempotently, so whichever comes first
wins and the other is a no-op (one this gateway recorded lately is known without asking the job
store); the live path makes a gateway's own streams fast even when another gateway took the
durable copy. While the job store is away, a durable event is left unsettled and delivered again
(after a pause that grows to a few seconds) until it is recorded: an outage delays events, never
drops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import OrderedDict

from brokers.base import Broker, EventDelivery, Subscription
from mlgate import tracing
from mlgate.errors import NotFound
from mlgate.events import is_terminal
from mlgate.metrics import job_ended
from mlgate.v1 import jobs_pb2
from server.hub import Hub
from server.jobstore.base import JobStore, Recorded
from server.jobstore.errors import JobStoreUnavailable
from storage.models import ModelRepository

__all__ = ["Recorder"]

log = logging.getLogger(__name__)

_RECENT = 10_000


class Recorder:
    """Owns the gateway's event subscriptions."""

    def __init__(
        self,
        broker: Broker,
        store: JobStore,
        models: ModelRepository,
        hub: Hub,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._broker = broker
        self._store = store
        self._models = models
        self._hub = hub
        self._loop = loop
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        # Events this gateway recorded lately, by (job, seq, attempt): each arrives by both
        # paths, and the second needs no job-store transaction to find out it is a duplicate.
        self._recorded: OrderedDict[tuple[str, int, int], None] = OrderedDict()

    def start(self) -> None:
        self._subscriptions = [
            self._broker.watch_events(self._on_live),
            self._broker.consume_events(self._on_durable),
        ]

    def stop(self, timeout: float | None = None) -> None:
        for subscription in self._subscriptions:
            subscription.cancel(timeout)
        self._subscriptions = []

    def _on_durable(self, delivery: EventDelivery) -> None:
        self.record(jobs_pb2.JobEvent.FromString(delivery.body))
        delivery.ack()

    def _on_live(self, body: bytes) -> None:
        # The durable copy waits in the broker until a gateway records it: nothing is lost, and
        # an outage does not log a traceback per live event.
        with contextlib.suppress(JobStoreUnavailable):
            self.record(jobs_pb2.JobEvent.FromString(body))

    def record(self, event: jobs_pb2.JobEvent) -> None:
        """Record ``event`` if it moves its job forward, then wake the job's streams."""
        key = (event.job_id, event.seq, event.attempt)
        with self._lock:
            # The other path brought it here first: the store has it, only the wake-up is left.
            seen = key in self._recorded
        if seen:
            self._wake(event)
            return
        parent = tracing.extract(tuple(event.trace_context.items()))
        with (
            tracing.span("record event", parent=parent, seq=event.seq, state=event.state),
            self._lock,
        ):
            applied = self._store.record(event)
            self._recorded[key] = None
            if len(self._recorded) > _RECENT:
                self._recorded.popitem(last=False)
            # Under the lock, so the hub gets this gateway's writes in the order they were made.
            # Wake even for a duplicate: another gateway may have recorded it just before us.
            self._wake(event, applied)
        if applied is None:
            self._discard_orphan_model(event)
        elif is_terminal(applied.job.state):
            job_ended(applied.job)  # counted by the one gateway that recorded the end

    def _wake(self, event: jobs_pb2.JobEvent, applied: Recorded | None = None) -> None:
        """Wake the job's streams: with the event as written, when this gateway wrote it."""
        # RuntimeError: the gateway is shutting down and its loop is closed.
        with contextlib.suppress(RuntimeError):
            if applied is not None and applied.logged is not None:
                self._loop.call_soon_threadsafe(
                    self._hub.extend, event.job_id, applied.logged, applied.after_seq
                )
            else:
                self._loop.call_soon_threadsafe(self._hub.notify, event.job_id, event.seq)

    def _discard_orphan_model(self, event: jobs_pb2.JobEvent) -> None:
        # A worker that missed a cancellation may still finish the job; its model must not outlive it.
        if event.state != jobs_pb2.JOB_STATE_SUCCEEDED or not event.HasField("train_result"):
            return
        job = self._store.get(event.job_id)
        if job is not None and job.state == jobs_pb2.JOB_STATE_CANCELLED:
            try:
                self._models.delete(event.train_result.model_id)
                log.info(
                    "deleted model %s of cancelled job %s", event.train_result.model_id, job.id
                )
            except NotFound:
                pass
