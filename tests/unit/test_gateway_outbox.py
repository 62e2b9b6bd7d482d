"""The gateway's outbox (server/outbox.py) on a real job store and the in-memory broker: published
jobs are marked in batches, a job recorded and never published is published by a sweep once, one
that cannot be published ends FAILED naming why, and a restart's requeue leaves nothing to sweep;
its settings, and the test-only fault point that strands a job."""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from brokers import TRAIN_QUEUE, Delivery
from brokers.memory import MemoryBroker
from mlgate.events import QUEUED_SEQ, event
from mlgate.ids import new_job_id
from mlgate.v1 import jobs_pb2
from server.hub import Hub
from server.jobstore.sqlite import SQLiteJobStore
from server.main import after_record_fault
from server.outbox import FLUSH_EVERY, Outbox
from server.settings import GatewaySettings
from server.submit import requeue_unfinished
from storage.local import LocalObjectStore
from storage.models import ModelRepository


class CountingStore(SQLiteJobStore):
    """A real SQLite job store that counts its ``mark_published`` writes."""

    marks: list[int]

    def mark_published(self, job_ids: Sequence[str]) -> None:
        self.marks.append(len(job_ids))
        super().mark_published(job_ids)


@dataclass
class Parts:
    broker: MemoryBroker
    store: CountingStore
    models: ModelRepository

    def outbox(self, *, after: float = 0.0, give_up: float = 300.0) -> Outbox:
        hub = Hub(self.store.events)
        return Outbox(
            self.broker, self.store, self.models, hub, after=after, give_up=give_up,
            publish_timeout=1.0,
        )  # fmt: skip

    def recorded(self, *, age: float = 0.0) -> jobs_pb2.Job:
        """A training job as a gateway records it, submitted ``age`` seconds ago."""
        job_id = new_job_id()
        queued = event(job_id, QUEUED_SEQ, jobs_pb2.JOB_STATE_QUEUED)
        queued.time.FromNanoseconds(time.time_ns() - int(age * 1e9))
        job = jobs_pb2.Job(
            id=job_id,
            kind=jobs_pb2.JOB_KIND_TRAIN,
            state=jobs_pb2.JOB_STATE_QUEUED,
            create_time=queued.time,
            last_event=queued,
        )
        job.train.dataset_id = "diabetes"
        self.store.create(job)
        return job

    def unpublished(self) -> set[str]:
        # A claim renews what it takes, but these tests look once per job.
        return {job.id for job in self.store.claim_unpublished(0, 1000)}


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    store = CountingStore(tmp_path / "jobs.db")
    store.marks = []
    broker = MemoryBroker()
    broker.start()
    try:
        yield Parts(broker, store, ModelRepository(LocalObjectStore(tmp_path / "objects")))
    finally:
        broker.close()
        store.close()


def _queued(broker: MemoryBroker, count: int) -> list[Delivery]:
    """The next ``count`` deliveries of the train queue, acknowledged."""
    got: queue.Queue[Delivery] = queue.Queue()

    def handler(delivery: Delivery) -> None:
        delivery.ack()
        got.put(delivery)

    subscription = broker.consume(TRAIN_QUEUE, handler, prefetch=count)
    try:
        return [got.get(timeout=10) for _ in range(count)]
    finally:
        subscription.cancel(5)


def test_published_jobs_are_marked_in_one_write_per_batch(parts: Parts) -> None:
    jobs = [parts.recorded() for _ in range(50)]

    async def run() -> None:
        outbox = parts.outbox(after=60)
        outbox.start()
        for job in jobs:
            outbox.published(job.id)
        # The next batch goes within a flush interval, without anyone asking.
        deadline = time.monotonic() + 10 * FLUSH_EVERY + 5
        while not parts.store.marks and time.monotonic() < deadline:
            await asyncio.sleep(FLUSH_EVERY / 3)
        await outbox.stop()

    asyncio.run(run())
    assert parts.store.marks == [50]
    assert parts.unpublished() == set()


def test_a_job_recorded_and_never_published_is_published_once_by_a_sweep(parts: Parts) -> None:
    stranded = parts.recorded()
    outbox = parts.outbox()

    asyncio.run(outbox.sweep())

    (delivery,) = _queued(parts.broker, 1)
    assert delivery.message.job_id == stranded.id
    assert jobs_pb2.Job.FromString(delivery.message.body).train.dataset_id == "diabetes"
    # Marked as it was published: the next sweep has nothing to do.
    asyncio.run(outbox.sweep())
    assert all(q.depth == 0 for q in parts.broker.stats().queues)
    assert parts.store.get(stranded.id).state == jobs_pb2.JOB_STATE_QUEUED  # type: ignore[union-attr]


def test_a_sweep_leaves_jobs_marked_lately_to_their_own_gateway(parts: Parts) -> None:
    parts.recorded()
    asyncio.run(parts.outbox(after=60).sweep())
    assert all(q.depth == 0 for q in parts.broker.stats().queues)


def test_a_job_that_cannot_reach_the_broker_ends_failed_once_past_the_give_up(
    parts: Parts,
) -> None:
    old = parts.recorded(age=120)
    recent = parts.recorded(age=1)
    parts.broker.close()  # every publish now fails

    asyncio.run(parts.outbox(give_up=60).sweep())

    failed = parts.store.get(old.id)
    assert failed is not None and failed.state == jobs_pb2.JOB_STATE_FAILED
    assert failed.last_event.error.code == "UNAVAILABLE"
    assert failed.last_event.error.message == (
        "not queued: the job never reached the job broker (memory) within 60 s of its "
        "submission; submit it again"
    )
    # Not yet past it: still QUEUED and marked, tried again when its lease runs out.
    assert parts.store.get(recent.id).state == jobs_pb2.JOB_STATE_QUEUED  # type: ignore[union-attr]
    assert parts.unpublished() == {recent.id}


def test_a_failure_the_store_could_not_take_is_recorded_later(parts: Parts) -> None:
    job = parts.recorded()
    failed = event(job.id, QUEUED_SEQ + 1, jobs_pb2.JOB_STATE_FAILED)
    failed.error.code = "UNAVAILABLE"
    outbox = parts.outbox()
    outbox.end_later(job.id, failed)

    asyncio.run(outbox.flush())

    ended = parts.store.get(job.id)
    assert ended is not None and ended.state == jobs_pb2.JOB_STATE_FAILED
    assert parts.unpublished() == set()


def test_jobs_requeued_on_start_are_not_swept_again(parts: Parts) -> None:
    waiting = parts.recorded()
    assert requeue_unfinished(parts.broker, parts.store, parts.models, 1.0) == 1
    asyncio.run(parts.outbox().sweep())
    (delivery,) = _queued(parts.broker, 1)
    assert delivery.message.job_id == waiting.id
    assert all(q.depth == 0 for q in parts.broker.stats().queues)


def test_the_outbox_and_drain_settings_are_read_and_checked() -> None:
    env = {
        "MLGATE_PUBLISH_TIMEOUT": "2",
        "MLGATE_OUTBOX_AFTER": "3",
        "MLGATE_OUTBOX_GIVE_UP": "60",
        "MLGATE_DRAIN_DELAY": "5",
        "MLGATE_DRAIN_GRACE": "30",
    }
    settings = GatewaySettings.from_env(env)
    assert (settings.outbox_after, settings.outbox_give_up) == (3.0, 60.0)
    assert (settings.drain_delay, settings.drain_grace) == (5.0, 30.0)
    defaults = GatewaySettings.from_env({})
    assert (defaults.outbox_after, defaults.outbox_give_up) == (30.0, 300.0)
    assert (defaults.drain_delay, defaults.drain_grace) == (0.0, 10.0)

    # A sweep must not publish again a job whose publish may still be under way.
    with pytest.raises(ValueError, match=r"MLGATE_OUTBOX_AFTER \(10 s\) must be above "):
        GatewaySettings.from_env({"MLGATE_OUTBOX_AFTER": "10"})
    with pytest.raises(ValueError, match=r"MLGATE_OUTBOX_GIVE_UP \(20 s\) must be at least"):
        GatewaySettings.from_env({"MLGATE_OUTBOX_GIVE_UP": "20"})
    with pytest.raises(ValueError, match="MLGATE_DRAIN_DELAY must be a number of seconds"):
        GatewaySettings.from_env({"MLGATE_DRAIN_DELAY": "-1"})


def test_the_fault_point_is_off_unless_a_test_sets_it() -> None:
    assert after_record_fault({}) is None
    assert after_record_fault({"MLGATE_FAULT_AFTER_RECORD": "2"}) is not None
    with pytest.raises(ValueError, match="MLGATE_FAULT_AFTER_RECORD must be a whole number"):
        after_record_fault({"MLGATE_FAULT_AFTER_RECORD": "soon"})
