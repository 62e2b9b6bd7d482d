"""Job store fixtures: every backend the job store suite runs against, fresh per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlgate.v1 import jobs_pb2
from server.jobstore.base import JobStore
from server.jobstore.sqlite import SQLiteJobStore
from tests.support.waiting import wait_for

StoreFactory = Callable[[], JobStore]
Backend = Callable[[Path, float], Iterator[StoreFactory]]

#: Long enough that no test's jobs expire, unless a test asks for the short one.
RETENTION = 3600.0
SHORT_RETENTION = 1.0


def wait_until_swept(store: JobStore, ended_id: str, live_id: str) -> None:
    """Write to the live job (a write sweeps when a sweep is due) until the ended job is gone."""

    def swept() -> bool:
        store.record(jobs_pb2.JobEvent(job_id=live_id, seq=1, state=jobs_pb2.JOB_STATE_QUEUED))
        return store.get(ended_id) is None

    wait_for(swept, 15, "the ended job being deleted")


def _sqlite(tmp_path: Path, retention: float) -> Iterator[StoreFactory]:
    made: list[JobStore] = []

    def make() -> JobStore:
        # Every store made in one test opens the same database, as two gateway processes would.
        store = SQLiteJobStore(tmp_path / "jobs.db", retention=retention)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def _redis(tmp_path: Path, retention: float) -> Iterator[StoreFactory]:
    from tests.support.redis import redis_stores

    yield from redis_stores(retention=retention)


def _postgres(tmp_path: Path, retention: float) -> Iterator[StoreFactory]:
    from tests.support.postgres import postgres_stores

    yield from postgres_stores(retention=retention)


BACKENDS: dict[str, Backend] = {"sqlite": _sqlite, "redis": _redis, "postgres": _postgres}


@pytest.fixture(params=sorted(BACKENDS))
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    yield from BACKENDS[request.param](tmp_path, RETENTION)


@pytest.fixture(params=sorted(BACKENDS))
def make_short_lived_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[StoreFactory]:
    """Stores that delete finished jobs a second after they ended."""
    yield from BACKENDS[request.param](tmp_path, SHORT_RETENTION)
