"""What the job store suites share: a factory of stores on one backend, and waiting for a sweep."""

from __future__ import annotations

from collections.abc import Callable

from mlgate.v1 import jobs_pb2
from server.jobstore.base import JobStore
from tests.support.waiting import wait_for

__all__ = ["StoreFactory", "wait_until_swept"]

#: Makes stores that all see the same fresh space on one backend, as several gateways would.
StoreFactory = Callable[[], JobStore]


def wait_until_swept(store: JobStore, ended_id: str, live_id: str) -> None:
    """Write to the live job (a write sweeps when a sweep is due) until the ended job is gone."""

    def swept() -> bool:
        store.record(jobs_pb2.JobEvent(job_id=live_id, seq=1, state=jobs_pb2.JOB_STATE_QUEUED))
        return store.get(ended_id) is None

    wait_for(swept, 15, "the ended job being deleted")
