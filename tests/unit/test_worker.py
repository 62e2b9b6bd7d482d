"""The worker on the in-memory broker, with the broker made to fail at chosen moments."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from brokers import PRIOR_ATTEMPTS_HEADER
from brokers.base import TRAIN_QUEUE, EventDelivery, Message
from brokers.errors import BrokerError, BrokerUnavailable
from brokers.memory import MemoryBroker
from mlgate.ids import model_id_for_job, new_job_id
from mlgate.v1 import jobs_pb2
from storage.datasets import DatasetCatalog
from storage.local import LocalObjectStore
from storage.models import ModelRepository
from workers.settings import WorkerSettings
from workers.worker import Worker


class FlakyBroker(MemoryBroker):
    """A memory broker whose event publishes fail while ``failing`` says so."""

    def __init__(
        self,
        failing: Callable[[jobs_pb2.JobEvent], bool],
        error: type[BrokerError] = BrokerUnavailable,
    ) -> None:
        super().__init__()
        self._failing = failing
        self._error = error
        self.refused: list[jobs_pb2.JobEvent] = []
        self._lock2 = threading.Lock()

    def publish_event(self, body: bytes, *, timeout: float, confirm: bool = True) -> None:
        event = jobs_pb2.JobEvent.FromString(body)
        with self._lock2:
            if self._failing(event):
                self.refused.append(event)
                raise self._error("broker down for the test")
        super().publish_event(body, timeout=timeout, confirm=confirm)


def _run(
    broker: FlakyBroker,
    tmp_path: Path,
    *,
    target: str = "target",
    prior_attempts: int = 0,
    before: Callable[[LocalObjectStore, str], object] = lambda store, model_id: None,
) -> tuple[list[jobs_pb2.JobEvent], ModelRepository]:
    """Run one diabetes training job to its end; ``before`` prepares the store for its model."""
    store = LocalObjectStore(tmp_path / "objects")
    models = ModelRepository(store)
    settings = WorkerSettings.from_env({}, data_dir=tmp_path)
    broker.start()
    worker = Worker(broker, DatasetCatalog(store), models, settings)
    worker.start()
    seen: queue.Queue[jobs_pb2.JobEvent] = queue.Queue()

    def record(delivery: EventDelivery) -> None:
        seen.put(jobs_pb2.JobEvent.FromString(delivery.body))
        delivery.ack()

    broker.consume_events(record)
    job = jobs_pb2.Job(id=new_job_id(), kind=jobs_pb2.JOB_KIND_TRAIN)
    job.train.dataset_id = "diabetes"
    job.train.target = target
    before(store, model_id_for_job(job.id))
    headers = ((PRIOR_ATTEMPTS_HEADER, str(prior_attempts)),)
    broker.publish(TRAIN_QUEUE, Message(job.id, job.SerializeToString(), headers), timeout=5)
    events: list[jobs_pb2.JobEvent] = []
    while not events or events[-1].state == jobs_pb2.JOB_STATE_RUNNING:
        events.append(seen.get(timeout=60))
    worker.stop(10)
    broker.close()
    return events, models


def test_progress_events_lost_to_an_outage_do_not_fail_the_job(tmp_path: Path) -> None:
    broker = FlakyBroker(lambda e: e.state == jobs_pb2.JOB_STATE_RUNNING)
    events, models = _run(broker, tmp_path)
    assert [e.state for e in events] == [jobs_pb2.JOB_STATE_SUCCEEDED]
    assert broker.refused  # at least the attempt's first progress event was tried
    assert models.exists(events[-1].train_result.model_id)


def test_a_terminal_event_the_broker_cannot_take_waits_for_it_in_the_same_attempt(
    tmp_path: Path,
) -> None:
    failures = iter([True, True])
    broker = FlakyBroker(lambda e: e.state != jobs_pb2.JOB_STATE_RUNNING and next(failures, False))
    events, models = _run(broker, tmp_path)
    final = events[-1]
    # Two tries could not record the outcome: a broker outage, waited out, not an attempt; the
    # third reused the saved model.
    assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED
    assert final.attempt == 1
    assert [e.state for e in broker.refused] == [jobs_pb2.JOB_STATE_SUCCEEDED] * 2
    assert [m.job_id for m in models.list()] == [final.job_id]


def test_a_broker_error_other_than_an_outage_leaves_the_job_for_redelivery(
    tmp_path: Path,
) -> None:
    failures = iter([True, True])
    broker = FlakyBroker(
        lambda e: e.state != jobs_pb2.JOB_STATE_RUNNING and next(failures, False), BrokerError
    )
    events, models = _run(broker, tmp_path)
    final = events[-1]
    assert final.state == jobs_pb2.JOB_STATE_SUCCEEDED
    assert final.attempt == 3
    assert [m.job_id for m in models.list()] == [final.job_id]


def test_a_job_beyond_max_attempts_is_dead_lettered_and_failed(tmp_path: Path) -> None:
    # Each attempt ends without an outcome, as when its worker dies: a broker error that is not
    # an outage (one would be waited out). The saved model cannot be reported either.
    broker = FlakyBroker(lambda e: e.state == jobs_pb2.JOB_STATE_SUCCEEDED, BrokerError)
    events, _ = _run(broker, tmp_path)
    assert events[-1].state == jobs_pb2.JOB_STATE_FAILED
    assert events[-1].error.code == "ABORTED"
    assert "dead-lettered after 3 attempts" in events[-1].error.message
    assert [m.job_id for m in broker.dead_letters(TRAIN_QUEUE)] == [events[-1].job_id]


def _died_before_its_manifest(store: LocalObjectStore, model_id: str) -> None:
    """What an attempt that died between saving its artifact and its manifest left behind."""
    store.put(f"models/{model_id}/{'ab' * 32}.model", b"half of a model")


def _left(tmp_path: Path, model_id: str) -> list[str]:
    return sorted(LocalObjectStore(tmp_path / "objects").list(f"models/{model_id}/"))


@pytest.mark.parametrize("how", ["dead-lettered", "failed"])
def test_a_training_job_that_ends_without_a_model_leaves_nothing_in_storage(
    tmp_path: Path, how: str
) -> None:
    broker = FlakyBroker(lambda e: False)
    if how == "dead-lettered":
        events, _ = _run(broker, tmp_path, prior_attempts=3, before=_died_before_its_manifest)
        assert "dead-lettered after 3 attempts" in events[-1].error.message
    else:
        events, _ = _run(broker, tmp_path, target="nope", before=_died_before_its_manifest)
        assert events[-1].error.code == "INVALID_ARGUMENT"
    assert events[-1].state == jobs_pb2.JOB_STATE_FAILED
    model_id = model_id_for_job(events[-1].job_id)
    assert _left(tmp_path, model_id) == []
    assert not (tmp_path / "objects" / "models" / model_id).exists()


def test_a_job_over_the_attempt_limit_whose_model_is_saved_succeeded(tmp_path: Path) -> None:
    """Its earlier deliveries were taken by broker outages after the model was saved: the job is
    reported SUCCEEDED with that model, not dead-lettered, and nothing is fitted again."""
    first = FlakyBroker(lambda e: False)
    done, models = _run(first, tmp_path)
    saved = models.get(done[-1].train_result.model_id)

    def same_model(store: LocalObjectStore, model_id: str) -> None:
        manifest = json.loads(store.get(f"models/{saved.id}/manifest.json"))
        manifest["model"]["id"] = model_id
        store.put(f"models/{model_id}/{saved.sha256}.model", b"")  # not loaded: only reported
        store.put(f"models/{model_id}/manifest.json", json.dumps(manifest).encode())

    events, _ = _run(FlakyBroker(lambda e: False), tmp_path, prior_attempts=3, before=same_model)
    assert [e.state for e in events] == [jobs_pb2.JOB_STATE_SUCCEEDED]
    assert events[-1].train_result.model_id == model_id_for_job(events[-1].job_id)


def test_a_worker_stopped_while_its_job_waits_out_an_outage_hands_it_back_uncounted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="workers.outages")
    store = LocalObjectStore(tmp_path / "objects")
    models = ModelRepository(store)
    settings = WorkerSettings.from_env({}, data_dir=tmp_path)
    broker = FlakyBroker(lambda e: False)
    broker.start()
    seen: queue.Queue[jobs_pb2.JobEvent] = queue.Queue()

    def record(delivery: EventDelivery) -> None:
        seen.put(jobs_pb2.JobEvent.FromString(delivery.body))
        delivery.ack()

    broker.consume_events(record)
    away = store.root.with_name("away")
    store.root.rename(away)
    first = Worker(broker, DatasetCatalog(store), models, settings)
    first.start()
    job = jobs_pb2.Job(id=new_job_id(), kind=jobs_pb2.JOB_KIND_TRAIN)
    job.train.dataset_id = "diabetes"
    job.train.target = "target"
    broker.publish(TRAIN_QUEUE, Message(job.id, job.SerializeToString()), timeout=5)
    deadline = time.monotonic() + 30
    while not caplog.records:
        assert time.monotonic() < deadline, "the job never met the outage"
        time.sleep(0.05)  # the worker's log is the signal
    stopping = time.monotonic()
    first.stop(10)
    assert time.monotonic() - stopping < 3  # it did not wait out the outage, nor the grace
    away.rename(store.root)
    second = Worker(broker, DatasetCatalog(store), models, settings)
    second.start()
    try:
        events = [seen.get(timeout=60)]
        while events[-1].state == jobs_pb2.JOB_STATE_RUNNING:
            events.append(seen.get(timeout=60))
    finally:
        second.stop(10)
        broker.close()
    assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
    assert events[-1].attempt == 1  # the handback was not an attempt
