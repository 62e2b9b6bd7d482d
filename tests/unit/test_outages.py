"""``OutageRetry`` against a real local store whose directory goes away and comes back."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from mlgate.failures import Backends, public
from storage.errors import StorageUnavailable
from storage.local import LocalObjectStore
from workers.outages import OutageOutlasted, OutageRetry
from workers.settings import WorkerSettings


class Cancelled(Exception):
    pass


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "storage")


def _away(store: LocalObjectStore) -> Path:
    away = store.root.with_name("away")
    store.root.rename(away)
    return away


def _retry(limit: float) -> OutageRetry:
    return OutageRetry(limit, Backends("redis", "sqlite", "local directory"))


def test_a_job_runs_again_once_the_store_is_back_and_the_outage_is_logged_once(
    store: LocalObjectStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="workers.outages")
    away = _away(store)
    back = threading.Timer(1.5, lambda: away.rename(store.root))
    back.start()
    runs = 0

    def attempt() -> bytes:
        nonlocal runs
        runs += 1
        store.put("models/m/x", b"saved")
        return store.get("models/m/x")

    started = time.monotonic()
    assert _retry(30).run(attempt) == b"saved"
    back.join()
    assert 1.5 <= time.monotonic() - started < 8
    assert 2 <= runs <= 6  # backoff from 0.5 s: a few runs, not a spin
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("the object store (local directory) is unreachable")
    assert messages[1].startswith("the object store (local directory) is back after")


def test_an_outage_past_the_bound_is_unavailable_told_as_the_gateway_tells_it(
    store: LocalObjectStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="workers.outages")
    _away(store)
    started = time.monotonic()
    with pytest.raises(OutageOutlasted) as raised:
        _retry(1).run(lambda: store.put("k", b"x"), where="job j")
    assert 1 <= time.monotonic() - started < 3
    backends = Backends("redis", "sqlite", "local directory")
    assert isinstance(raised.value.__cause__, StorageUnavailable)
    told = public(raised.value, backends, "job j")
    assert told == public(raised.value.__cause__, backends, "GetModel")
    assert (told.code, told.message) == (
        "UNAVAILABLE",
        "the object store (local directory) is unreachable; try again shortly",
    )
    assert (
        "job j: the object store (local directory) stayed unreachable for 1 s, longer than a job "
        "waits (MLGATE_OUTAGE_RETRY_SECONDS)" in caplog.text
    )


def test_a_bound_of_zero_fails_at_once(store: LocalObjectStore) -> None:
    _away(store)
    with pytest.raises(OutageOutlasted):
        _retry(0).run(lambda: store.put("k", b"x"))


def test_a_cancelled_job_stops_waiting_and_a_stopping_worker_gives_the_job_back(
    store: LocalObjectStore,
) -> None:
    _away(store)
    cancelled = threading.Event()
    threading.Timer(0.3, cancelled.set).start()

    def check() -> None:
        if cancelled.is_set():
            raise Cancelled

    started = time.monotonic()
    with pytest.raises(Cancelled):
        _retry(60).run(lambda: store.put("k", b"x"), check=check)
    assert time.monotonic() - started < 1.5

    retry = _retry(60)
    threading.Timer(0.3, retry.stopping.set).start()
    with pytest.raises(StorageUnavailable):
        retry.run(lambda: store.put("k", b"x"))
    assert time.monotonic() - started < 3


def test_the_bound_is_a_setting() -> None:
    assert WorkerSettings.from_env({}).outage_retry_seconds == 300
    assert (
        WorkerSettings.from_env({"MLGATE_OUTAGE_RETRY_SECONDS": "2.5"}).outage_retry_seconds == 2.5
    )
    for bad in ("-1", "soon", "nan", "inf"):
        with pytest.raises(ValueError, match="MLGATE_OUTAGE_RETRY_SECONDS"):
            WorkerSettings.from_env({"MLGATE_OUTAGE_RETRY_SECONDS": bad})
