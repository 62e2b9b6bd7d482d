"""Job store fixtures: every backend the job store suite runs against, fresh per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from server.jobstore.sqlite import SQLiteJobStore
from tests.support.jobstores import StoreFactory, closing_all

Backend = Callable[[Path, float], Iterator[StoreFactory]]

#: Long enough that no test's jobs expire, unless a test asks for the short one.
RETENTION = 3600.0
SHORT_RETENTION = 1.0


def _sqlite(tmp_path: Path, retention: float) -> Iterator[StoreFactory]:
    # Every store made in one test opens the same database, as two gateway processes would.
    with closing_all(lambda: SQLiteJobStore(tmp_path / "jobs.db", retention=retention)) as make:
        yield make


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
