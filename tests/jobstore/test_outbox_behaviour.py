"""The outbox, written once against the contract, run against every job store: a job recorded
but never published can be found and claimed by exactly one gateway at a time."""

from __future__ import annotations

import threading
import time

from mlgate.ids import new_job_id
from mlgate.v1 import jobs_pb2
from server.jobstore.base import JobStore
from tests.support.jobstores import StoreFactory, queued_job

#: Long enough that no job of a test is due unless the test waits for it.
LONG_AGO = 3600.0


def _created(store: JobStore, rows: int = 0) -> jobs_pb2.Job:
    job = queued_job(rows)
    store.create(job)
    return job


def _claimed_ids(store: JobStore, older_than: float = 0.0, limit: int = 1000) -> list[str]:
    return sorted(job.id for job in store.claim_unpublished(older_than, limit))


def test_a_recorded_job_is_unpublished_until_marked(make_store: StoreFactory) -> None:
    store = make_store()
    job = _created(store, rows=3)
    assert store.claim_unpublished(LONG_AGO, 10) == [], "not due before the threshold"

    (claimed,) = store.claim_unpublished(0.0, 10)
    # The whole job, rows included, as it is to be published.
    assert claimed == store.get(job.id)
    assert claimed.predict == job.predict

    store.mark_published([job.id, new_job_id()])  # an unknown id is ignored
    assert _claimed_ids(store) == []


def test_a_claim_is_a_lease_that_runs_out(make_store: StoreFactory) -> None:
    store = make_store()
    job = _created(store)
    assert _claimed_ids(store) == [job.id]
    # Renewed by the claim: not due again for a while, due again once the lease has run out.
    assert _claimed_ids(store, older_than=LONG_AGO) == []
    assert _claimed_ids(store, older_than=0.0) == [job.id]


def test_any_event_applied_to_a_job_clears_its_mark(make_store: StoreFactory) -> None:
    store = make_store()
    running, cancelled, duplicate, waiting = (_created(store) for _ in range(4))
    store.record(jobs_pb2.JobEvent(job_id=running.id, seq=2, state=jobs_pb2.JOB_STATE_RUNNING))
    cancel = jobs_pb2.JobEvent(job_id=cancelled.id, state=jobs_pb2.JOB_STATE_CANCELLED)
    store.cancel(cancelled.id, cancel)
    # A redelivered QUEUED event is not applied: that job still waits to be published.
    store.record(jobs_pb2.JobEvent(job_id=duplicate.id, seq=1, state=jobs_pb2.JOB_STATE_QUEUED))
    assert _claimed_ids(store) == sorted([duplicate.id, waiting.id])


def test_many_jobs_are_marked_published_at_once(make_store: StoreFactory) -> None:
    store = make_store()
    jobs = [_created(store) for _ in range(1200)]
    store.mark_published([job.id for job in jobs[:1100]])
    assert _claimed_ids(store, limit=2000) == sorted(job.id for job in jobs[1100:])
    store.mark_published([])


def test_claims_take_the_oldest_marks_up_to_the_limit(make_store: StoreFactory) -> None:
    store = make_store()
    jobs = [_created(store) for _ in range(5)]
    first = _claimed_ids(store, limit=2)
    assert len(first) == 2
    second = _claimed_ids(store, older_than=LONG_AGO / 2, limit=10)
    assert second == [], "the claimed jobs' leases have not run out"
    rest = _claimed_ids(store, limit=3)
    assert not set(first) & set(rest), "the limit took the oldest marks: the unclaimed come next"
    assert set(first) | set(rest) == {job.id for job in jobs}


def test_two_gateways_claiming_at_once_never_get_the_same_job(make_store: StoreFactory) -> None:
    stores = [make_store(), make_store()]
    jobs = [_created(stores[0]) for _ in range(60)]
    lease = 1.0
    time.sleep(lease + 0.1)  # the marks must be older than the lease: time itself must pass
    start = threading.Barrier(6)
    claimed: list[list[str]] = [[] for _ in range(6)]

    def claim(index: int) -> None:
        start.wait()
        while batch := stores[index % 2].claim_unpublished(lease, 7):
            claimed[index] += [job.id for job in batch]

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [job_id for part in claimed for job_id in part]
    assert sorted(every) == sorted(job.id for job in jobs), "each job claimed exactly once"
