"""The hub (server/hub.py) on a real SQLite job store: a stream gets every event of its job once
and in order, and wake-ups that bring the event as written, or name one the feed has, cost no
read of the store."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlgate.events import QUEUED_SEQ, event
from mlgate.ids import new_job_id
from mlgate.v1 import jobs_pb2
from server.hub import Hub
from server.jobstore.base import Recorded
from server.jobstore.sqlite import SQLiteJobStore

SUCCEEDED = jobs_pb2.JOB_STATE_SUCCEEDED
RUNNING = jobs_pb2.JOB_STATE_RUNNING


class Reads:
    """The store's ``events``, counted; ``hold`` keeps the next read waiting until released."""

    def __init__(self, store: SQLiteJobStore) -> None:
        self.store = store
        self.count = 0
        self.hold: threading.Event | None = None
        self.started = threading.Event()

    def __call__(self, job_id: str, after_seq: int) -> list[jobs_pb2.JobEvent]:
        self.count += 1
        self.started.set()
        if self.hold is not None:
            self.hold.wait(10)
        return self.store.events(job_id, after_seq)


@dataclass
class Setup:
    store: SQLiteJobStore
    reads: Reads
    hub: Hub
    job: jobs_pb2.Job


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """A hub reading a real store through ``Reads``, and a job recorded QUEUED in it."""
    store = SQLiteJobStore(tmp_path / "jobs.db")
    reads = Reads(store)
    yield Setup(store, reads, Hub(reads), _queued(store))
    store.close()


def _queued(store: SQLiteJobStore) -> jobs_pb2.Job:
    job_id = new_job_id()
    job = jobs_pb2.Job(id=job_id, kind=jobs_pb2.JOB_KIND_TRAIN, state=jobs_pb2.JOB_STATE_QUEUED)
    job.last_event.CopyFrom(event(job_id, QUEUED_SEQ, jobs_pb2.JOB_STATE_QUEUED))
    store.create(job)
    return job


def _record(store: SQLiteJobStore, job: jobs_pb2.Job, seq: int, state: int) -> Recorded:
    recorded = store.record(event(job.id, seq, state, attempt=1))
    assert recorded is not None and recorded.logged is not None
    return recorded


async def _stream(hub: Hub, job: jobs_pb2.Job) -> list[int]:
    return [seen.seq async for seen in hub.follow(job.id, 0, first=job.last_event)]


def test_events_handed_over_in_order_need_no_read(setup: Setup) -> None:
    store, reads, hub, job = setup.store, setup.reads, setup.hub, setup.job

    async def run() -> list[int]:
        stream = asyncio.create_task(_stream(hub, job))
        await asyncio.sleep(0)  # the stream's feed is registered
        for seq, state in ((2, RUNNING), (3, SUCCEEDED)):
            recorded = _record(store, job, seq, state)
            assert recorded.logged is not None
            hub.extend(job.id, recorded.logged, recorded.after_seq)
            hub.notify(job.id, seq)  # its copy by the broker's other path: known already
        return await asyncio.wait_for(stream, 10)

    assert asyncio.run(run()) == [1, 2, 3]
    assert reads.count == 0


def test_an_event_handed_over_past_a_gap_is_read_with_the_gap(setup: Setup) -> None:
    store, reads, hub, job = setup.store, setup.reads, setup.hub, setup.job

    async def run() -> list[int]:
        stream = asyncio.create_task(_stream(hub, job))
        await asyncio.sleep(0)
        # Seq 2's wake-up is late (another thread's, or another gateway's): 3 does not follow
        # what the feed has read, so the feed reads 2 and 3 from the store.
        running = _record(store, job, 2, RUNNING)
        done = _record(store, job, 3, SUCCEEDED)
        assert done.logged is not None and running.logged is not None
        hub.extend(job.id, done.logged, done.after_seq)
        hub.extend(job.id, running.logged, running.after_seq)
        return await asyncio.wait_for(stream, 10)

    assert asyncio.run(run()) == [1, 2, 3]
    assert reads.count == 1


def test_a_read_under_way_and_an_event_handed_over_meanwhile_give_it_once(setup: Setup) -> None:
    store, reads, hub, job = setup.store, setup.reads, setup.hub, setup.job
    running = _record(store, job, 2, RUNNING)

    async def run() -> list[int]:
        reads.hold = threading.Event()
        stream = asyncio.create_task(_stream(hub, job))
        await asyncio.sleep(0)
        hub.notify(job.id)  # a plain wake-up: the feed reads after seq 1, and the read is held
        await asyncio.to_thread(reads.started.wait, 10)
        assert running.logged is not None
        hub.extend(job.id, running.logged, running.after_seq)
        _record(store, job, 3, SUCCEEDED)  # its wake-up goes to another gateway, say
        reads.hold.set()  # the read returns 2, which the feed has already, and 3
        return await asyncio.wait_for(stream, 10)

    assert asyncio.run(run()) == [1, 2, 3]
    assert reads.count == 1
