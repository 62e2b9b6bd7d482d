"""What the job store suites share: a factory of stores on one backend, a queued job to store,
training jobs that succeed, and waiting for a sweep."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from mlgate.ids import model_id_for_job, new_job_id
from mlgate.v1 import jobs_pb2
from server.jobstore.base import JobStore
from tests.support.waiting import wait_for

__all__ = [
    "StoreFactory",
    "closing_all",
    "queued_job",
    "queued_training",
    "success",
    "wait_until_swept",
]

#: Makes stores that all see the same fresh space on one backend, as several gateways would.
StoreFactory = Callable[[], JobStore]

S = TypeVar("S", bound=JobStore)


@contextmanager
def closing_all(open_store: Callable[[], S]) -> Iterator[Callable[[], S]]:
    """A factory of stores opened by ``open_store``; every one it made is closed on exit."""
    made: list[S] = []

    def make() -> S:
        store = open_store()
        made.append(store)
        return store

    try:
        yield make
    finally:
        for store in made:
            store.close()


def queued_job(rows: int = 0, created_ns: int = 0) -> jobs_pb2.Job:
    """A new job as the gateway records it: QUEUED, its first event seq 1; a training job, or a
    prediction of ``rows`` rows; created now unless ``created_ns`` says when."""
    job_id = new_job_id()
    stamp = Timestamp()
    if created_ns:
        stamp.FromNanoseconds(created_ns)
    else:
        stamp.GetCurrentTime()
    kind = jobs_pb2.JOB_KIND_PREDICT if rows else jobs_pb2.JOB_KIND_TRAIN
    job = jobs_pb2.Job(id=job_id, kind=kind, state=jobs_pb2.JOB_STATE_QUEUED)
    job.create_time.CopyFrom(stamp)
    if rows:
        job.predict.model_id = "mdl_" + "c" * 32
        for i in range(rows):
            job.predict.rows.add().update({"x": i})
    else:
        job.train.dataset_id = "diabetes"
    job.last_event.CopyFrom(
        jobs_pb2.JobEvent(job_id=job_id, seq=1, state=jobs_pb2.JOB_STATE_QUEUED, time=stamp)
    )
    return job


def queued_training(store: JobStore, name: str = "", owner: str = "") -> jobs_pb2.Job:
    """A training job recorded in ``store``, QUEUED, naming its model ``name``, submitted by the
    token called ``owner``."""
    job = queued_job()
    job.train.model_name = name
    job.owner = owner
    store.create(job)
    return job


def success(job: jobs_pb2.Job, at_ns: int = 0) -> jobs_pb2.JobEvent:
    """The training job's SUCCEEDED event, as its worker sends it (at ``at_ns`` if given)."""
    done = jobs_pb2.JobEvent(job_id=job.id, seq=6, state=jobs_pb2.JOB_STATE_SUCCEEDED)
    done.train_result.model_id = model_id_for_job(job.id)
    if at_ns:
        done.time.FromNanoseconds(at_ns)
    return done


def wait_until_swept(store: JobStore, ended_id: str, live_id: str) -> None:
    """Write to the live job (a write sweeps when a sweep is due) until the ended job is gone."""

    def swept() -> bool:
        store.record(jobs_pb2.JobEvent(job_id=live_id, seq=1, state=jobs_pb2.JOB_STATE_QUEUED))
        return store.get(ended_id) is None

    wait_for(swept, 15, "the ended job being deleted")
