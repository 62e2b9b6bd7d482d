"""Jobs queued again when a gateway on a broker that does not keep jobs restarts go out as
submissions do: the same message, the attempts they already had, and a trace the worker joins."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from brokers import PREDICT_QUEUE, TRAIN_QUEUE, Delivery
from brokers.memory import MemoryBroker
from mlgate import tracing
from mlgate.events import QUEUED_SEQ, event
from mlgate.ids import new_job_id
from mlgate.v1 import jobs_pb2
from server.jobstore.sqlite import SQLiteJobStore
from server.submit import requeue_unfinished
from storage.local import LocalObjectStore
from storage.models import ModelRepository


@pytest.fixture
def traced() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing("mlgate-test", exporter=exporter)
    yield exporter
    tracing.reset_for_tests()  # the rest of the session runs with tracing off, as by default


def _recorded(store: SQLiteJobStore, kind: jobs_pb2.JobKind.ValueType) -> jobs_pb2.Job:
    job_id = new_job_id()
    queued = event(job_id, QUEUED_SEQ, jobs_pb2.JOB_STATE_QUEUED)
    job = jobs_pb2.Job(id=job_id, kind=kind, state=jobs_pb2.JOB_STATE_QUEUED, last_event=queued)
    if kind == jobs_pb2.JOB_KIND_PREDICT:
        job.predict.model_id = "mdl_" + "0" * 32  # gone: the worker will say so
    store.create(job)
    return job


def _delivered(broker: MemoryBroker, name: str) -> Delivery:
    got: queue.Queue[Delivery] = queue.Queue()

    def handler(delivery: Delivery) -> None:
        delivery.ack()
        got.put(delivery)

    subscription = broker.consume(name, handler, prefetch=1)
    try:
        return got.get(timeout=10)
    finally:
        subscription.cancel(5)


def test_unfinished_jobs_go_out_again_with_their_attempts_and_a_trace(
    tmp_path: Path, traced: InMemorySpanExporter
) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.db")
    broker = MemoryBroker()
    broker.start()
    try:
        waiting = _recorded(store, jobs_pb2.JOB_KIND_TRAIN)
        running = _recorded(store, jobs_pb2.JOB_KIND_PREDICT)
        store.record(event(running.id, QUEUED_SEQ + 1, jobs_pb2.JOB_STATE_RUNNING, attempt=1))
        finished = _recorded(store, jobs_pb2.JOB_KIND_TRAIN)
        store.record(event(finished.id, QUEUED_SEQ + 1, jobs_pb2.JOB_STATE_SUCCEEDED))

        models = ModelRepository(LocalObjectStore(tmp_path / "objects"))
        assert requeue_unfinished(broker, store, models, publish_timeout=5) == 2

        train = _delivered(broker, TRAIN_QUEUE)
        predict = _delivered(broker, PREDICT_QUEUE)
        assert (train.message.job_id, train.attempt) == (waiting.id, 1)
        # The worker that had started it counted one delivery: this one is the second.
        assert (predict.message.job_id, predict.attempt) == (running.id, 2)
        # The finished job stays finished: nothing else was queued.
        assert all(q.depth == 0 for q in broker.stats().queues)

        publishes = {
            span.attributes["job_id"]: span
            for span in traced.get_finished_spans()
            if span.name == "publish" and span.attributes is not None
        }
        for delivery in (train, predict):
            span = publishes[delivery.message.job_id]
            # The message carries its publish span's context: the worker's spans join that trace.
            parent = tracing.extract(delivery.message.headers)
            context = trace.get_current_span(parent).get_span_context()
            assert context.trace_id == span.context.trace_id
            assert context.span_id == span.context.span_id
    finally:
        broker.close()
        store.close()


def test_a_searchs_unfinished_trials_go_out_again_and_the_search_does_not(tmp_path: Path) -> None:
    """Listings leave TRIAL and SHARD jobs out unless asked for by kind: requeueing asks."""
    store = SQLiteJobStore(tmp_path / "jobs.db")
    broker = MemoryBroker()
    broker.start()
    try:
        search = _recorded(store, jobs_pb2.JOB_KIND_SEARCH)
        trial_id = new_job_id()
        queued = event(trial_id, QUEUED_SEQ, jobs_pb2.JOB_STATE_QUEUED)
        trial = jobs_pb2.Job(
            id=trial_id,
            kind=jobs_pb2.JOB_KIND_TRIAL,
            state=jobs_pb2.JOB_STATE_QUEUED,
            last_event=queued,
            parent_job_id=search.id,
        )
        trial.trial.cv_folds = 3
        store.create(trial)

        models = ModelRepository(LocalObjectStore(tmp_path / "objects"))
        assert requeue_unfinished(broker, store, models, publish_timeout=5) == 1
        assert _delivered(broker, TRAIN_QUEUE).message.job_id == trial.id
        assert all(q.depth == 0 for q in broker.stats().queues)
    finally:
        broker.close()
        store.close()
