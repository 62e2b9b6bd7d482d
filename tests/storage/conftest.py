"""Object store fixtures: every backend the behaviour suite runs against, fresh per test.

S3 runs on a private SeaweedFS (``tests.support.s3``) with 5 MiB parts, so a stream of a few MiB
goes through a multipart upload, and small listing pages, so listings cross page boundaries.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from storage.base import ObjectStore
from storage.local import LocalObjectStore
from storage.s3_client import default_transfer
from tests.support.object_stores import PART_SIZE, StoreFactory
from tests.support.s3 import S3Server


def _local(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    # Every store made in one test opens the same directory, as two processes would.
    yield lambda: LocalObjectStore(tmp_path / "objects")


def _s3(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    server: S3Server = request.getfixturevalue("s3_server")
    prefix = f"test-{uuid.uuid4().hex[:12]}"
    yield lambda: server.store(prefix, transfer=default_transfer(PART_SIZE), page_size=3)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Iterator[StoreFactory]]] = {
    "local": _local,
    "s3": _s3,
}


@pytest.fixture(params=sorted(BACKENDS))
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory of stores that all see the same fresh space on one backend."""
    yield from BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def store(make_store: StoreFactory) -> ObjectStore:
    return make_store()
