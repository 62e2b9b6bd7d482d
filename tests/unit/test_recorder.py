"""The recorder (server/recorder.py) on the in-memory broker and a real SQLite job store: each
event is written once though it comes by two paths, events gathered while a write is under way
go in the next one, every stream gets its job's events in order without reading the store, and
an event the store could not take is written again, so its streams hear of it even when another
gateway recorded its durable copy."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

from brokers.base import EventHandler, Subscription
from brokers.memory import MemoryBroker
from mlgate.events import QUEUED_SEQ, event
from mlgate.ids import new_job_id
from mlgate.store_errors import JobStoreUnavailable
from mlgate.v1 import jobs_pb2
from server.hub import Hub
from server.jobstore.base import Recorded
from server.jobstore.sqlite import SQLiteJobStore
from server.recorder import Recorder
from storage.local import LocalObjectStore
from storage.models import ModelRepository
from tests.support.waiting import wait_for

JOBS = 40


class HeldStore(SQLiteJobStore):
    """A real store that notes each batch written and holds the first until ``release``."""

    batches: list[int]
    release: threading.Event

    def record_all(self, events: Sequence[jobs_pb2.JobEvent]) -> list[Recorded | None]:
        self.batches.append(len(events))
        self.release.wait(10)
        return super().record_all(events)


def test_events_are_written_once_in_batches_and_streamed_without_reads(tmp_path: Path) -> None:
    store = HeldStore(tmp_path / "jobs.db")
    store.batches, store.release = [], threading.Event()
    reads: list[str] = []

    def read_events(job_id: str, after_seq: int) -> list[jobs_pb2.JobEvent]:
        reads.append(job_id)
        return store.events(job_id, after_seq)

    jobs = []
    for _ in range(JOBS):
        job_id = new_job_id()
        queued = event(job_id, QUEUED_SEQ, jobs_pb2.JOB_STATE_QUEUED)
        job = jobs_pb2.Job(id=job_id, kind=jobs_pb2.JOB_KIND_TRAIN, state=queued.state)
        job.last_event.CopyFrom(queued)
        store.create(job)
        jobs.append(job)
    broker = MemoryBroker()
    broker.start()

    async def run() -> list[list[int]]:
        hub = Hub(read_events)
        models = ModelRepository(LocalObjectStore(tmp_path / "objects"))
        recorder = Recorder(broker, store, models, hub, asyncio.get_running_loop())
        recorder.start()

        async def stream(job: jobs_pb2.Job) -> list[int]:
            return [e.seq async for e in hub.follow(job.id, 0, first=job.last_event)]

        streams = [asyncio.create_task(stream(job)) for job in jobs]
        await asyncio.sleep(0)  # every stream follows its job

        def publish() -> None:
            for state in (jobs_pb2.JOB_STATE_RUNNING, jobs_pb2.JOB_STATE_SUCCEEDED):
                for job in jobs:
                    seq = 2 if state == jobs_pb2.JOB_STATE_RUNNING else 3
                    body = event(job.id, seq, state, attempt=1).SerializeToString()
                    broker.publish_event(body, timeout=5)
            store.release.set()  # the first write goes on, the rest have gathered meanwhile

        await asyncio.to_thread(publish)
        try:
            return await asyncio.wait_for(asyncio.gather(*streams), 30)
        finally:
            await asyncio.to_thread(recorder.stop, 5)

    try:
        seen = asyncio.run(run())
    finally:
        broker.close()
        store.close()
    assert seen == [[1, 2, 3]] * JOBS
    assert reads == [], "every event went to its stream as written, none read back"
    assert sum(store.batches) == 2 * JOBS, "each event written once, by whichever copy came first"
    assert len(store.batches) < 2 * JOBS, "events that came during a write went in the next one"


class OtherGatewayTakesTheDurableCopies(MemoryBroker):
    """This gateway sees the live copies only: another took every durable one."""

    def consume_events(self, handler: EventHandler) -> Subscription:
        return _Idle()


class _Idle(Subscription):
    def cancel(self, timeout: float | None = None) -> None:
        pass


class AwayOnce(SQLiteJobStore):
    """A real store that cannot be reached for one write, once ``away`` is set."""

    away: threading.Event
    refused: threading.Event

    def record_all(self, events: Sequence[jobs_pb2.JobEvent]) -> list[Recorded | None]:
        if self.away.is_set():
            self.away.clear()
            self.refused.set()
            raise JobStoreUnavailable("the job store is away (test)")
        return super().record_all(events)


def test_an_event_the_store_could_not_take_is_written_again(tmp_path: Path) -> None:
    store = AwayOnce(tmp_path / "jobs.db")
    store.away, store.refused = threading.Event(), threading.Event()
    job_id = new_job_id()
    queued = event(job_id, QUEUED_SEQ, jobs_pb2.JOB_STATE_QUEUED)
    job = jobs_pb2.Job(id=job_id, kind=jobs_pb2.JOB_KIND_TRAIN, state=queued.state)
    job.last_event.CopyFrom(queued)
    store.create(job)
    done = event(job_id, 2, jobs_pb2.JOB_STATE_SUCCEEDED, attempt=1)
    broker = OtherGatewayTakesTheDurableCopies()
    broker.start()

    async def run() -> list[int]:
        hub = Hub(store.events)
        models = ModelRepository(LocalObjectStore(tmp_path / "objects"))
        recorder = Recorder(broker, store, models, hub, asyncio.get_running_loop())
        recorder.start()
        stream = asyncio.create_task(_seqs(hub, job))
        await asyncio.sleep(0)
        store.away.set()
        broker.publish_event(done.SerializeToString(), timeout=5)
        # This gateway's write fails; the other gateway records the durable copy meanwhile.
        await asyncio.to_thread(wait_for, store.refused.is_set, 10, "the write refused")
        assert SQLiteJobStore.record(store, done) is not None
        try:
            return await asyncio.wait_for(stream, 30)
        finally:
            await asyncio.to_thread(recorder.stop, 5)

    try:
        assert asyncio.run(run()) == [1, 2]
    finally:
        broker.close()
        store.close()


async def _seqs(hub: Hub, job: jobs_pb2.Job) -> list[int]:
    return [e.seq async for e in hub.follow(job.id, 0, first=job.last_event)]
