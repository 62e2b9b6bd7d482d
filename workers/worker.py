"""The worker: takes jobs from the broker, runs them, records the outcome, then acknowledges.

A job that fails ends FAILED with its reason and the worker goes on. A delivery beyond
``max_attempts`` (earlier attempts died without an outcome) is dead-lettered and its job FAILED.
An outage of the object store or the broker is waited out, not counted as an attempt
(``workers.outages``); any other broker error leaves the delivery unsettled, so the broker
delivers the job again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from brokers.base import (
    INFERENCE_QUEUE,
    PREDICT_QUEUE,
    TRAIN_QUEUE,
    Broker,
    Delivery,
    HandBack,
    Subscription,
)
from brokers.errors import BrokerError, BrokerUnavailable
from mlgate import tracing
from mlgate.columns import check_columns, column_values
from mlgate.errors import MLGateError, status_of
from mlgate.events import ATTEMPT_SEQ_BLOCK, attempt_seq, event, terminal_seq
from mlgate.ids import model_id_for_job
from mlgate.jobs import MODEL_SHA_HEADER, check_rows, from_struct, plan
from mlgate.logs import job_context
from mlgate.metrics import INFERENCE_BATCH_ROWS, job_started
from mlgate.settings import Settings
from mlgate.v1 import jobs_pb2, models_pb2
from storage.datasets import DatasetCatalog
from storage.errors import IntegrityError
from storage.models import ModelRepository
from workers import prediction
from workers.cache import ModelCache
from workers.categories import unseen_categories
from workers.evaluation import evaluate
from workers.fitpool import ChildDied, FitPool, FitStopped
from workers.inference import InferenceServer
from workers.messages import FitTask
from workers.outages import OUTAGES, OutageOutlasted, OutageRetry
from workers.parallelism import cap_jobs, fit_cores
from workers.progress import Pacer
from workers.tensors import from_columns
from workers.values import add_values

__all__ = ["Worker"]

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """The job was cancelled while it ran."""


class _Events:
    """Publishes one attempt's events for one job, numbered in the attempt's own seq block; its
    progress at the pacer's pace (``workers.progress``)."""

    def __init__(
        self,
        broker: Broker,
        job: jobs_pb2.Job,
        attempt: int,
        timeout: float,
        max_attempts: int,
        pacer: Pacer,
    ) -> None:
        self._broker = broker
        self._job = job
        self._attempt = attempt
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._step = 0
        self._pace = pacer.pace(self._publish_progress)

    def _body(self, seq: int, state: int, **fields: Any) -> bytes:
        body = event(self._job.id, seq, state, attempt=self._attempt, **fields)
        body.trace_context.update(tracing.inject())
        return body.SerializeToString()

    def send(self, seq: int, state: int, **fields: Any) -> None:
        """Publish the attempt's outcome, confirmed; progress still held is dropped."""
        self._pace.drop()
        self._broker.publish_event(self._body(seq, state, **fields), timeout=self._timeout)

    def _publish_progress(self, body: bytes) -> None:
        self._broker.publish_event(body, timeout=self._timeout, confirm=False)

    def close(self) -> None:
        """The attempt has ended, with or without an outcome: no more progress."""
        self._pace.close()

    def running(self, stage: int, progress: float, message: str = "") -> None:
        if self._step >= ATTEMPT_SEQ_BLOCK - 2:
            return  # the attempt's block is spent: only its outcome is left to number
        self._step += 1
        if self._step == 1 and self._attempt > 1:
            message = message or (
                f"attempt {self._attempt} of {self._max_attempts} started: the earlier one "
                "ended without an outcome"
            )
        # Progress is informative: a broker outage must not fail the job over it. Only the
        # terminal event decides the outcome, and it is retried by redelivery, not skipped. So
        # progress is not confirmed either: the outcome, confirmed, follows it in order.
        body = self._body(
            attempt_seq(self._attempt, self._step),
            jobs_pb2.JOB_STATE_RUNNING,
            stage=stage,
            progress=progress,
            message=message,
        )
        try:
            self._pace.offer(body)
        except BrokerError as exc:
            log.warning("job %s: progress event not published: %s", self._job.id, exc)

    def succeeded(self, **result: Any) -> None:
        self.send(terminal_seq(self._attempt), jobs_pb2.JOB_STATE_SUCCEEDED, progress=1.0, **result)

    def failed(self, code: str, message: str) -> None:
        self.send(
            terminal_seq(self._attempt),
            jobs_pb2.JOB_STATE_FAILED,
            error=jobs_pb2.JobError(code=code, message=message),
            message=message,
        )


class _Recent:
    """A bounded set of recently cancelled job ids."""

    def __init__(self, size: int = 10_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def add(self, job_id: str) -> None:
        with self._lock:
            self._ids[job_id] = None
            while len(self._ids) > self._size:
                self._ids.popitem(last=False)

    def __contains__(self, job_id: object) -> bool:
        with self._lock:
            return job_id in self._ids


class Worker:
    """Connects the train and predict queues to the training and prediction functions."""

    def __init__(
        self, broker: Broker, catalog: DatasetCatalog, models: ModelRepository, settings: Settings
    ) -> None:
        self._broker = broker
        self._catalog = catalog
        self._models = models
        self._settings = settings
        self._cores = fit_cores(settings.fit_cores, settings.train_concurrency)
        # A stored model's n_jobs is capped too: it was capped when trained, unless crafted.
        self.cache = ModelCache(
            models, settings.model_cache_bytes, prepare=lambda model: cap_jobs(model, self._cores)
        )
        self._cancelled = _Recent()
        # Jobs whose outcome this worker published but may not have acknowledged (a broker
        # outage took the delivery): their redelivery is acknowledged, neither run nor counted.
        self._recorded = _Recent()
        self._outages = OutageRetry(
            settings.outage_retry_seconds, broker=broker.name, storage_url=settings.storage_url
        )
        self._subscriptions: list[Subscription] = []
        self._pool = FitPool(catalog.store, settings.train_concurrency)
        self._pacer = Pacer()

    def start(self) -> None:
        self._pool.start()
        self._pacer.start()
        self._subscriptions = [
            self._broker.watch_events(self._on_event),
            self._broker.consume(
                TRAIN_QUEUE, self._on_train, prefetch=self._settings.train_concurrency
            ),
            self._broker.consume(
                PREDICT_QUEUE, self._on_predict, prefetch=self._settings.predict_prefetch
            ),
            self._broker.serve_requests(
                INFERENCE_QUEUE,
                InferenceServer(self.cache).handle,
                concurrency=self._settings.infer_concurrency,
            ),
        ]

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking jobs; jobs still running after ``timeout`` go back to the broker."""
        self._outages.stopping.set()  # a job waiting out an outage goes back at once
        for subscription in reversed(self._subscriptions):
            subscription.cancel(timeout)
        self._subscriptions = []
        self._pool.close()
        self._pacer.stop()

    def fit_pids(self) -> list[int]:
        """The process ids of this worker's fit processes."""
        return self._pool.pids()

    def _on_event(self, body: bytes) -> None:
        seen = jobs_pb2.JobEvent.FromString(body)
        if seen.state == jobs_pb2.JOB_STATE_CANCELLED:
            self._cancelled.add(seen.job_id)

    def _on_train(self, delivery: Delivery) -> None:
        self._handle(delivery, self._train)

    def _on_predict(self, delivery: Delivery) -> None:
        self._handle(delivery, self._predict)

    def _handle(
        self, delivery: Delivery, run: Callable[[jobs_pb2.Job, _Events, Delivery], dict[str, Any]]
    ) -> None:
        try:
            job = jobs_pb2.Job.FromString(delivery.message.body)
        except Exception:
            delivery.dead_letter("the message is not a job")
            return
        if job.id in self._recorded:
            log.info("job %s: outcome already recorded; redelivery acknowledged", job.id)
            delivery.ack()
            return
        limit = self._settings.max_attempts
        events = _Events(
            self._broker, job, delivery.attempt, self._settings.publish_timeout, limit, self._pacer
        )
        if delivery.attempt > limit and not self._reported_saved(job, events):
            reason = (
                f"dead-lettered after {limit} attempts: each ended without an outcome "
                "(the worker died or lost its broker connection while running the job)"
            )
            events.failed("ABORTED", reason)
            delivery.dead_letter(reason)
            self._discard_unfinished(job)
            return
        if job.id in self._cancelled:
            self._discard_unfinished(job)
            delivery.ack()
            return
        kind = "train" if job.kind == jobs_pb2.JOB_KIND_TRAIN else "predict"
        parent = tracing.extract(delivery.message.headers)
        with (
            job_context(job.id),
            tracing.span(f"{kind} job", parent=parent, job_id=job.id, attempt=delivery.attempt),
        ):
            if delivery.attempt == 1:
                tracing.record_span("queue wait", job.create_time.ToNanoseconds(), time.time_ns())
            self._run(job, events, delivery, run)

    def _reported_saved(self, job: jobs_pb2.Job, events: _Events) -> bool:
        """Over the attempt limit, a training job whose model is saved has succeeded (a broker
        outage, not a dying worker, took its deliveries): report that rather than dead-letter it.
        Whether it was reported; one try, so a job cannot go round for ever."""
        if job.kind != jobs_pb2.JOB_KIND_TRAIN:
            return False
        try:
            result = self._saved_result(model_id_for_job(job.id))
            if result is None:
                return False
            events.succeeded(**result)
        except Exception as exc:
            log.warning("job %s: its saved model could not be reported: %s", job.id, exc)
            return False
        return True

    def _discard_unfinished(self, job: jobs_pb2.Job) -> None:
        """A training job that ends without a model leaves nothing in storage: an artifact that
        an attempt saved before dying (or before its manifest failed) is removed."""
        if job.kind != jobs_pb2.JOB_KIND_TRAIN:
            return
        try:
            self._models.discard_unfinished(model_id_for_job(job.id))
        except Exception as exc:
            log.warning(
                "job %s: what an unfinished attempt stored was not removed: %s", job.id, exc
            )

    def _saved_result(self, model_id: str) -> dict[str, Any] | None:
        """The result of a training job whose model an earlier attempt saved, if one did."""
        if not self._models.exists(model_id):
            return None
        record = self._models.get(model_id)
        return {"train_result": jobs_pb2.TrainResult(model_id=model_id, metrics=record.metrics)}

    def _run(
        self,
        job: jobs_pb2.Job,
        events: _Events,
        delivery: Delivery,
        run: Callable[[jobs_pb2.Job, _Events, Delivery], dict[str, Any]],
    ) -> None:
        started = time.time()
        if delivery.attempt == 1:
            job_started(job, started)
        if job.kind == jobs_pb2.JOB_KIND_TRAIN:
            log.info("running train job %s (attempt %d)", job.id, delivery.attempt)
        outcome = "left for redelivery"
        try:
            outcome = self._outages.run(
                lambda: self._attempt(job, events, delivery, run),
                check=lambda: self._check_cancelled(job),
            )
        except Cancelled:
            outcome = "cancelled"
            self._discard_unfinished(job)
            delivery.ack()
            return
        except ChildDied as exc:
            # As if the worker had died: the attempt counts, and the delivery goes back.
            log.warning("job %s: %s", job.id, exc)
            return
        except OUTAGES as exc:
            # The worker is stopping while the job waits for an outage: not an attempt.
            outcome = "handed back"
            raise HandBack(str(exc)) from exc
        except OutageOutlasted as exc:
            events.failed(*status_of(exc))
            outcome = "failed"
        finally:
            events.close()
            _log_end(job, outcome, delivery.attempt, started)
        self._recorded.add(job.id)
        if outcome == "failed":
            self._discard_unfinished(job)
        try:
            delivery.ack()
        except BrokerUnavailable as exc:
            log.warning("job %s: outcome recorded, but not acknowledged: %s", job.id, exc)

    def _attempt(
        self,
        job: jobs_pb2.Job,
        events: _Events,
        delivery: Delivery,
        run: Callable[[jobs_pb2.Job, _Events, Delivery], dict[str, Any]],
    ) -> str:
        """Run the job once and publish its outcome; how it ended. Cancellation, outages and
        other broker errors (the outcome cannot be recorded) go to the caller."""
        try:
            result = run(job, events, delivery)
        except (Cancelled, ChildDied, BrokerError, *OUTAGES):
            raise
        except MLGateError as exc:
            events.failed(*status_of(exc))
            return "failed"
        except IntegrityError as exc:
            events.failed("DATA_LOSS", str(exc))
            return "failed"
        except Exception as exc:
            log.exception("job %s failed", job.id)
            events.failed(*status_of(exc))
            return "failed"
        events.succeeded(**result)
        return "succeeded"

    def _check_cancelled(self, job: jobs_pb2.Job) -> None:
        if job.id in self._cancelled:
            raise Cancelled(job.id)

    def _train(self, job: jobs_pb2.Job, events: _Events, delivery: Delivery) -> dict[str, Any]:
        request = job.train
        model_id = model_id_for_job(job.id)
        if self._models.exists(model_id):
            # An earlier attempt saved the model and died before acknowledging: reuse it.
            record = self._models.get(model_id)
            return {"train_result": jobs_pb2.TrainResult(model_id=model_id, metrics=record.metrics)}
        schema = self._catalog.describe(request.dataset_id)
        task = FitTask(
            job_id=job.id,
            model_id=model_id,
            plan=plan(request, schema),
            dataset_sha256=schema.sha256,
            cores=self._cores,
            memory_limit=self._settings.train_memory_limit,
        )
        timeout = self._settings.train_timeout
        if request.HasField("timeout_seconds"):
            timeout = min(timeout, request.timeout_seconds)

        def progress(stage: int, fraction: float) -> None:
            events.running(stage, fraction)

        with tracing.span("fit and score", estimator=task.plan.estimator):
            try:
                fitted = self._pool.run(
                    task, progress, stop=lambda: job.id in self._cancelled, timeout=timeout
                )
            except FitStopped:
                raise Cancelled(job.id) from None
        tracing.record_span("load data", *fitted.loaded, dataset_id=request.dataset_id)
        self._check_cancelled(job)
        events.running(jobs_pb2.STAGE_SAVING, 0.9)
        record = models_pb2.Model.FromString(fitted.record)
        with tracing.span("save model", model_id=model_id):
            saved = self._models.save_encoded(record, fitted.encoded)
        result = jobs_pb2.TrainResult(
            model_id=saved.id, metrics=saved.metrics, fit_seconds=fitted.fit_seconds
        )
        return {"train_result": result}

    def _predict(self, job: jobs_pb2.Job, events: _Events, delivery: Delivery) -> dict[str, Any]:
        request = job.predict
        sha = dict(delivery.message.headers).get(MODEL_SHA_HEADER, "")
        if request.model_id not in self.cache:
            events.running(jobs_pb2.STAGE_LOADING_MODEL, 0.1)
        with tracing.span("load model", model_id=request.model_id):
            record, model = self.cache.get(request.model_id, sha)
        # No RUNNING event for the prediction itself: it takes milliseconds, and an event costs
        # every gateway a job-store write and every watcher a message.
        if request.columns:
            return {"predict_result": _predict_columns(model, record, request)}
        rows = [from_struct(row) for row in request.rows]
        check_rows(rows, record.features)
        INFERENCE_BATCH_ROWS.observe(len(rows))
        with tracing.span("predict", rows=len(rows)):
            predicted, classes, probabilities = prediction.predict(model, record, rows)
        result = jobs_pb2.PredictResult(model_id=request.model_id)
        add_values(result.predictions, predicted)
        add_values(result.classes, classes)
        for row in probabilities:
            result.probabilities.add(values=row)
        result.warnings.extend(unseen_categories(model, lambda name: (row[name] for row in rows)))
        return {"predict_result": result}


def _predict_columns(
    model: Any, record: models_pb2.Model, request: jobs_pb2.PredictRequest
) -> jobs_pb2.PredictResult:
    """A columnar prediction: the columns become arrays and are evaluated in one step, by the
    same path as online inference."""
    count = check_columns(request.columns, record.features)
    INFERENCE_BATCH_ROWS.observe(count)
    with tracing.span("predict", rows=count):
        predicted, proba = evaluate(model, record, from_columns(request.columns, record))
    result = jobs_pb2.PredictResult(model_id=request.model_id)
    add_values(result.predictions, predicted.tolist())
    add_values(result.classes, [prediction.plain(c) for c in getattr(model, "classes_", [])])
    if proba is not None:
        for row in proba.tolist():
            result.probabilities.add(values=row)
    by_name = {column.name: column for column in request.columns}
    result.warnings.extend(unseen_categories(model, lambda name: column_values(by_name[name])))
    return result


def _log_end(job: jobs_pb2.Job, outcome: str, attempt: int, started: float) -> None:
    """The one line every job attempt ends with: its outcome, attempt and durations."""
    now = time.time()
    ran = now - started
    since_submitted = now - job.create_time.ToNanoseconds() / 1e9
    kind = "train" if job.kind == jobs_pb2.JOB_KIND_TRAIN else "predict"
    log.info(
        "%s job %s %s on attempt %d: ran %.3f s, %.3f s since submitted",
        kind,
        job.id,
        outcome,
        attempt,
        ran,
        since_submitted,
        extra={"kind": kind, "outcome": outcome, "attempt": attempt, "duration_s": round(ran, 6)},
    )
