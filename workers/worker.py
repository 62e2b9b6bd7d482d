"""The worker: takes jobs from the broker, runs them, records the outcome, then acknowledges.

A job that fails ends FAILED with its reason and the worker goes on. A delivery beyond
``max_attempts`` (earlier attempts died without an outcome) is dead-lettered and its job FAILED.
An outage of the object store or the broker is waited out, not counted as an attempt
(``workers.outages``); any other broker error leaves the delivery unsettled, so the broker
delivers the job again.
"""

from __future__ import annotations

import logging
import time
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
from mlgate.failures import Backends, public
from mlgate.ids import model_id_for_job
from mlgate.jobs import MODEL_SHA_HEADER, plan
from mlgate.logs import job_context
from mlgate.metrics import JOB_REDELIVERIES, job_started, kind_label
from mlgate.v1 import jobs_pb2, models_pb2
from storage import describe_store
from storage.datasets import DatasetCatalog
from storage.models import ModelRepository
from workers import prediction
from workers.attempt_events import AttemptEvents
from workers.cache import ModelCache
from workers.fitpool import ChildDied, FitPool, FitStopped
from workers.heartbeat import Heartbeat
from workers.inference import InferenceServer
from workers.messages import FitTask
from workers.outages import OUTAGES, OutageOutlasted, OutageRetry
from workers.parallelism import cap_jobs, fit_cores
from workers.progress import Pacer
from workers.running import Cancelled, Recent, RetryReasons, RunningJobs
from workers.scoring import ShardRunner
from workers.settings import WorkerSettings
from workers.trials import TrialRunner

__all__ = ["Worker"]

log = logging.getLogger(__name__)


#: Runs one attempt at a job; the fields of its SUCCEEDED event.
Run = Callable[[jobs_pb2.Job, AttemptEvents, Delivery], dict[str, Any]]


class Worker:
    """Connects the train and predict queues to the training and prediction functions."""

    def __init__(
        self,
        broker: Broker,
        catalog: DatasetCatalog,
        models: ModelRepository,
        settings: WorkerSettings,
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
        self._cancelled = Recent()
        # Jobs whose outcome this worker published but may not have acknowledged (a broker
        # outage took the delivery): their redelivery is acknowledged, neither run nor counted.
        self._recorded = Recent()
        self._reasons = RetryReasons()
        self._running = RunningJobs()
        self.heartbeat = Heartbeat(
            broker,
            self._running,
            interval=settings.heartbeat_seconds,
            max_attempts=settings.max_attempts,
        )
        # Faults are told as the gateway tells them (mlgate.failures), naming the same stores; a
        # worker meets no job store.
        self._backends = Backends(
            broker=broker.name, job_store="", object_store=describe_store(settings.storage_url)
        )
        self._outages = OutageRetry(settings.outage_retry_seconds, self._backends)
        self._subscriptions: list[Subscription] = []
        self._pool = FitPool(catalog.store, settings.train_concurrency, self._backends)
        self._trials = TrialRunner(self._pool, catalog, settings, self._cores)
        self._shards = ShardRunner(catalog, self.cache, self._cancelled)
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
                InferenceServer(self.cache, self._backends).handle,
                concurrency=self._settings.infer_concurrency,
            ),
        ]
        self.heartbeat.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop taking jobs; jobs still running after ``timeout`` go back to the broker."""
        self._outages.stopping.set()  # a job waiting out an outage goes back at once
        for subscription in reversed(self._subscriptions):
            subscription.cancel(timeout)
        self._subscriptions = []
        self.heartbeat.stop()
        self._pool.close()
        self._pacer.stop()

    def fit_pids(self) -> list[int]:
        """The process ids of this worker's fit processes."""
        return self._pool.pids()

    def _on_event(self, body: bytes) -> None:
        seen = jobs_pb2.JobEvent.FromString(body)
        if seen.state == jobs_pb2.JOB_STATE_CANCELLED:
            self._cancelled.add(seen.job_id)
        self._reasons.learn(seen)

    def _on_train(self, delivery: Delivery) -> None:
        self._handle(delivery, self._train)

    def _on_predict(self, delivery: Delivery) -> None:
        self._handle(delivery, self._predict)

    def _handle(self, delivery: Delivery, run: Run) -> None:
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
        kind = kind_label(job.kind)
        if delivery.attempt > 1:
            JOB_REDELIVERIES.labels(kind).inc()
        events = AttemptEvents(
            self._broker,
            job,
            delivery.attempt,
            self._settings.publish_timeout,
            limit,
            self._pacer,
            self._reasons.before(job.id, delivery.attempt),
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
        parent = tracing.extract(delivery.message.headers)
        with (
            job_context(job.id),
            tracing.span(f"{kind} job", parent=parent, job_id=job.id, attempt=delivery.attempt),
            self._running.track(job, delivery.attempt, events),
        ):
            if delivery.attempt == 1:
                tracing.record_span("queue wait", job.create_time.ToNanoseconds(), time.time_ns())
            self._run(job, events, delivery, run)

    def _reported_saved(self, job: jobs_pb2.Job, events: AttemptEvents) -> bool:
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
        if job.kind == jobs_pb2.JOB_KIND_SHARD:
            # Its scoring job ends without output: every shard's part goes (workers.scoring).
            self._shards.discard(job)
            return
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
        return {"train_result": _reused(self._models.get(model_id))}

    def _run(
        self,
        job: jobs_pb2.Job,
        events: AttemptEvents,
        delivery: Delivery,
        run: Run,
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
                where=f"job {job.id}",
                on_wait=events.waiting,
            )
        except Cancelled:
            outcome = "cancelled"
            self._discard_unfinished(job)
            delivery.ack()
            return
        except ChildDied as exc:
            # As if the worker had died: the attempt counts, and the delivery goes back.
            log.warning("job %s: %s", job.id, exc)
            reason = f"attempt {delivery.attempt}: {exc}"
            # Known here before the redelivery can reach this worker, not only once the event
            # comes back from the broker.
            self._reasons.put(job.id, (delivery.attempt, reason))
            events.awaiting_retry(reason)
            return
        except OUTAGES as exc:
            # The worker is stopping while the job waits for an outage: not an attempt.
            outcome = "handed back"
            raise HandBack(str(exc)) from exc
        except OutageOutlasted as exc:
            self._failed(job, events, exc)
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
        events: AttemptEvents,
        delivery: Delivery,
        run: Run,
    ) -> str:
        """Run the job once and publish its outcome; how it ended. Cancellation, outages and
        other broker errors (the outcome cannot be recorded) go to the caller."""
        try:
            result = run(job, events, delivery)
        except (Cancelled, ChildDied, BrokerError, *OUTAGES):
            raise
        except Exception as exc:
            self._failed(job, events, exc)
            return "failed"
        events.succeeded(**result)
        return "succeeded"

    def _failed(self, job: jobs_pb2.Job, events: AttemptEvents, exc: Exception) -> None:
        """Publish the job's FAILED outcome, told as the gateway would tell ``exc``."""
        failure = public(exc, self._backends, f"job {job.id}")
        events.failed(failure.code, failure.message)

    def _check_cancelled(self, job: jobs_pb2.Job) -> None:
        if job.id in self._cancelled:
            raise Cancelled(job.id)

    def _train(
        self, job: jobs_pb2.Job, events: AttemptEvents, delivery: Delivery
    ) -> dict[str, Any]:
        if job.kind == jobs_pb2.JOB_KIND_TRIAL:  # a search's candidate (workers.trials)
            return self._trials.run(job, events, lambda: self._check_cancelled(job))
        request = job.train
        model_id = model_id_for_job(job.id)
        if self._models.exists(model_id):
            # An earlier attempt saved the model and died before acknowledging: reuse it.
            return {"train_result": _reused(self._models.get(model_id))}
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
            model_id=saved.id,
            metrics=saved.metrics,
            fit_seconds=fitted.fit_seconds,
            warnings=saved.warnings,
        )
        return {"train_result": result}

    def _predict(
        self, job: jobs_pb2.Job, events: AttemptEvents, delivery: Delivery
    ) -> dict[str, Any]:
        if job.kind == jobs_pb2.JOB_KIND_SHARD:  # a scoring job's rows (workers.scoring)
            return self._shards.run(job)
        request = job.predict
        sha = dict(delivery.message.headers).get(MODEL_SHA_HEADER, "")
        if request.model_id not in self.cache:
            events.running(jobs_pb2.STAGE_LOADING_MODEL, 0.1)
        with tracing.span("load model", model_id=request.model_id):
            record, model = self.cache.get(request.model_id, sha)
        # No RUNNING event for the prediction itself: it takes milliseconds, and an event costs
        # every gateway a job-store write and every watcher a message.
        return {"predict_result": prediction.predict(model, record, request)}


def _reused(record: models_pb2.Model) -> jobs_pb2.TrainResult:
    """The result of a training job whose model an earlier attempt saved."""
    return jobs_pb2.TrainResult(
        model_id=record.id, metrics=record.metrics, warnings=record.warnings
    )


def _log_end(job: jobs_pb2.Job, outcome: str, attempt: int, started: float) -> None:
    """The one line every job attempt ends with: its outcome, attempt and durations."""
    now = time.time()
    ran = now - started
    since_submitted = now - job.create_time.ToNanoseconds() / 1e9
    kind = kind_label(job.kind)  # train, predict, trial, shard
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
