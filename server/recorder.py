"""Records the workers' events in the job store and wakes the streams that watch them.

Events arrive by two paths: the durable channel (shared by the gateways, kept while none runs) and
the live one (every gateway sees every event). Both record idempotently, so whichever comes first
wins and the other is a no-op (one this gateway recorded lately is known without asking the job
store); the live path makes a gateway's own streams fast even when another gateway took the
durable copy. While the job store is away, a durable event is left unsettled and delivered again
(after a pause that grows to a few seconds) until it is recorded: an outage delays events, never
drops them.

One writer thread records. The broker's threads hand it their events and go back to the broker;
it writes whatever has gathered since its last write in one ``JobStore.record_all`` (one
transaction), so a store whose commits wait for a disk (PostgreSQL) waits once per batch, not
once per event, however many jobs are running. A durable event is acknowledged only once the
batch holding it (or its live copy) is written. Events a write could not record for want of the
store are written again after a pause (growing to a few seconds) until they are: another gateway
may record the durable copy meanwhile, and this gateway's streams would never hear of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

from brokers.base import Broker, EventDelivery, Subscription
from mlgate import tracing
from mlgate.errors import NotFound
from mlgate.events import is_terminal
from mlgate.metrics import job_ended
from mlgate.store_errors import JobStoreError, JobStoreUnavailable
from mlgate.v1 import jobs_pb2
from server.hub import Hub
from server.jobstore.base import JobStore, Recorded
from storage.models import ModelRepository

__all__ = ["Recorder"]

log = logging.getLogger(__name__)

_RECENT = 10_000
# Live events waiting for the writer, or to be written again; past this (a store far slower
# than the workers, or a long outage), more are left to their durable copies.
_MAX_WAITING = 10_000
# Seconds before events the store could not take are written again: doubled each time it still
# cannot, up to the most.
_RETRY_FIRST = 0.5
_RETRY_MOST = 5.0

Key = tuple[str, int, int]


def _key(event: jobs_pb2.JobEvent) -> Key:
    # An event and its copies, and nothing else: a new attempt repeats seqs, not attempts.
    return event.job_id, event.seq, event.attempt


def _refused(event: jobs_pb2.JobEvent, exc: JobStoreError, failed: dict[Key, Exception]) -> None:
    failed[_key(event)] = exc
    if not isinstance(exc, JobStoreUnavailable):  # an outage is logged once, by the store
        log.warning("event %d of job %s not recorded: %s", event.seq, event.job_id, exc)


class _Batch:
    """Events gathered for one write. ``done`` is set once it was tried; ``failed`` holds what
    went wrong for the events that were not recorded."""

    def __init__(self) -> None:
        self.events: dict[Key, jobs_pb2.JobEvent] = {}
        self.done = threading.Event()
        self.failed: dict[Key, Exception] = {}


class Recorder:
    """Owns the gateway's event subscriptions and the thread that records their events."""

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
        self._subscriptions: list[Subscription] = []
        self._changed = threading.Condition()
        self._gathering = _Batch()
        self._writing: _Batch | None = None
        self._stopping = False
        self._writer: threading.Thread | None = None
        self._again: dict[Key, jobs_pb2.JobEvent] = {}  # to write again, at ``_again_at``
        self._again_at = 0.0
        self._pause = _RETRY_FIRST
        # Events this gateway recorded lately: each arrives by both paths, and the second needs
        # no job-store transaction to find out it is a duplicate.
        self._recorded: OrderedDict[Key, None] = OrderedDict()

    def start(self) -> None:
        self._stopping = False
        self._writer = threading.Thread(target=self._write_loop, name="mlgate-recorder")
        self._writer.daemon = True
        self._writer.start()
        self._subscriptions = [
            self._broker.watch_events(self._on_live),
            self._broker.consume_events(self._on_durable),
        ]

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking events, then write those gathered."""
        for subscription in self._subscriptions:
            subscription.cancel(timeout)
        self._subscriptions = []
        with self._changed:
            self._stopping = True
            self._changed.notify()
        if self._writer is not None:
            self._writer.join(timeout)
            self._writer = None

    def _on_durable(self, delivery: EventDelivery) -> None:
        event = jobs_pb2.JobEvent.FromString(delivery.body)
        batch = self._hand(event, durable=True)
        if batch is not None:
            batch.done.wait()
            failed = batch.failed.get(_key(event))
            if failed is not None:
                raise failed  # unsettled: delivered again
        delivery.ack()

    def _on_live(self, body: bytes) -> None:
        # The durable copy waits in the broker until a gateway records it: a live event that
        # cannot be recorded now is left to it, without a traceback per event in an outage.
        self._hand(jobs_pb2.JobEvent.FromString(body), durable=False)

    def _hand(self, event: jobs_pb2.JobEvent, *, durable: bool) -> _Batch | None:
        """Give ``event`` to the writer: the batch that records it, or None if there is none to
        wait for (recorded lately, which wakes its streams now, or a live event left over)."""
        key = _key(event)
        with self._changed:
            if key not in self._recorded:
                for batch in (self._writing, self._gathering):
                    if batch is not None and key in batch.events:
                        return batch  # its other copy's
                if not durable and len(self._gathering.events) >= _MAX_WAITING:
                    return None
                self._gathering.events[key] = event
                self._changed.notify()
                return self._gathering
        # The other path brought it here first: the store has it, only the wake-up is left.
        with contextlib.suppress(RuntimeError):  # the loop is closed: the gateway is stopping
            self._loop.call_soon_threadsafe(self._hub.notify, event.job_id, event.seq)
        return None

    def _write_loop(self) -> None:
        while True:
            with self._changed:
                while not (self._gathering.events or self._stopping or self._again_due()):
                    wait = max(0.0, self._again_at - time.monotonic()) if self._again else None
                    self._changed.wait(wait)
                if self._stopping and not self._gathering.events:
                    return
                batch, self._gathering = self._gathering, _Batch()
                if self._again_due():
                    # Ahead of what gathered since: a job's older events first.
                    again = {k: e for k, e in self._again.items() if k not in self._recorded}
                    batch.events = again | batch.events
                    self._again = {}
                self._writing = batch
            try:
                self._write(batch)
            except Exception as exc:
                log.exception("recording events failed")
                batch.failed = dict.fromkeys(batch.events, exc)
            finally:
                with self._changed:
                    self._writing = None
                    self._write_again(batch)
                batch.done.set()

    def _again_due(self) -> bool:
        return bool(self._again) and time.monotonic() >= self._again_at

    def _write_again(self, batch: _Batch) -> None:
        """Keep the events the store could not take, to write again after a pause."""
        unavailable = [k for k, exc in batch.failed.items() if isinstance(exc, JobStoreUnavailable)]
        if not unavailable:
            self._pause = _RETRY_FIRST
            return
        for key in unavailable:
            self._again[key] = batch.events[key]
        for key in list(self._again)[: max(0, len(self._again) - _MAX_WAITING)]:
            del self._again[key]  # the oldest: left to their durable copies
        self._again_at = time.monotonic() + self._pause
        self._pause = min(self._pause * 2, _RETRY_MOST)

    def _write(self, batch: _Batch) -> None:
        """Record the batch's events, wake their streams, then remember them."""
        keys, events = list(batch.events), list(batch.events.values())
        with contextlib.ExitStack() as spans:
            if tracing.enabled():
                for event in events:
                    parent = tracing.extract(tuple(event.trace_context.items()))
                    spans.enter_context(
                        tracing.span(
                            "record event", parent=parent, seq=event.seq, state=event.state
                        )
                    )
            results = self._record(events, batch.failed)
        written = [
            (event, applied)
            for key, event, applied in zip(keys, events, results, strict=True)
            if key not in batch.failed
        ]
        # One call for the batch, in the order written, and ahead of the wake-ups of the copies
        # that find these events remembered. Wake even for a duplicate: another gateway may have
        # recorded it just before us.
        with contextlib.suppress(RuntimeError):  # the loop is closed: the gateway is stopping
            self._loop.call_soon_threadsafe(self._wake, written)
        with self._changed:
            for key in keys:
                if key not in batch.failed:
                    self._recorded[key] = None
            while len(self._recorded) > _RECENT:
                self._recorded.popitem(last=False)
        for event, applied in written:
            if applied is None:
                self._discard_orphan_model(event)
            elif is_terminal(applied.job.state):
                job_ended(applied.job)  # counted by the one gateway that recorded the end

    def _record(
        self, events: list[jobs_pb2.JobEvent], failed: dict[Key, Exception]
    ) -> Sequence[Recorded | None]:
        """``record_all``; if the store refused it (not an outage), each event alone, so one it
        refuses does not hold up the others. What was not recorded goes to ``failed``."""
        try:
            return self._store.record_all(events)
        except JobStoreUnavailable as exc:
            failed.update(dict.fromkeys(map(_key, events), exc))
            return [None] * len(events)
        except JobStoreError as exc:
            if len(events) == 1:
                _refused(events[0], exc, failed)
                return [None]
        results: list[Recorded | None] = []
        for event in events:
            try:
                results.append(self._store.record(event))
            except JobStoreError as exc:
                _refused(event, exc, failed)
                results.append(None)
        return results

    def _wake(self, written: list[tuple[jobs_pb2.JobEvent, Recorded | None]]) -> None:
        """On the loop: hand each event as written to the job's streams, or just wake them."""
        for event, applied in written:
            if applied is not None and applied.logged is not None:
                self._hub.extend(event.job_id, applied.logged, applied.after_seq)
            else:
                self._hub.notify(event.job_id, event.seq)
            if applied is not None and applied.job.parent_job_id and is_terminal(applied.job.state):
                self._hub.child_ended(applied.job.parent_job_id)  # its parent's next step

    def _discard_orphan_model(self, event: jobs_pb2.JobEvent) -> None:
        # A worker that missed a cancellation may still finish the job; its model must not outlive it.
        if event.state != jobs_pb2.JOB_STATE_SUCCEEDED or not event.HasField("train_result"):
            return
        try:
            job = self._store.get(event.job_id)
        except JobStoreError as exc:
            log.warning("job %s: cannot check for an orphan model now: %s", event.job_id, exc)
            return
        if job is not None and job.state == jobs_pb2.JOB_STATE_CANCELLED:
            try:
                self._models.delete(event.train_result.model_id)
                log.info(
                    "deleted model %s of cancelled job %s", event.train_result.model_id, job.id
                )
            except NotFound:
                pass
