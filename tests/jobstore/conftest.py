"""Job store fixtures: every backend the job store suite runs against, fresh per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from server.jobstore.base import JobStore
from server.jobstore.sqlite import SQLiteJobStore

StoreFactory = Callable[[], JobStore]


def _sqlite(tmp_path: Path) -> Iterator[StoreFactory]:
    made: list[JobStore] = []

    def make() -> JobStore:
        # Every store made in one test opens the same database, as two gateway processes would.
        store = SQLiteJobStore(tmp_path / "jobs.db")
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


BACKENDS: dict[str, Callable[[Path], Iterator[StoreFactory]]] = {"sqlite": _sqlite}


def _redis(tmp_path: Path) -> Iterator[StoreFactory]:
    from tests.support.redis import redis_stores

    yield from redis_stores()


BACKENDS["redis"] = _redis


@pytest.fixture(params=sorted(BACKENDS))
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    yield from BACKENDS[request.param](tmp_path)
