"""The JobService servicer: submits jobs, streams their events from the job store, lists and cancels."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc

from brokers.base import Broker
from mlgate import tracing
from mlgate.columns import row_count
from mlgate.errors import InvalidField, NotFound, ResourceExhausted
from mlgate.events import queued_job
from mlgate.ids import check_job_id, new_job_id
from mlgate.inputs import check_predict
from mlgate.jobs import from_struct, plan
from mlgate.v1 import jobs_pb2, jobs_pb2_grpc
from server.drift import drift_of
from server.fanout import Coordinator
from server.hub import Hub
from server.jobstore.base import JobStore
from server.jobstore.records import bounded
from server.model_catalog import ModelCatalog
from server.ownership import check_may_cancel, owner_name, sees_inputs, visible_event, visible_job
from server.paging import page_size
from server.predict_serving import followed
from server.scoring import ScorePlan, checked_score
from server.search import SearchPlan
from server.search_space import resolve_search
from server.shadow import mirror_of
from server.submit import Submitter
from storage.datasets import DatasetCatalog

__all__ = ["JobServicer"]

Context = grpc.aio.ServicerContext[Any, Any]
R = TypeVar("R")


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    """Validates at the edge, records the job, queues it, then follows it in the store."""

    def __init__(
        self,
        broker: Broker,
        store: JobStore,
        catalog: DatasetCatalog,
        models: ModelCatalog,
        hub: Hub,
        submitter: Submitter,
        *,
        publish_timeout: float,
        max_predict_rows: int,
    ) -> None:
        self._publish_timeout = publish_timeout
        self._max_predict_rows = max_predict_rows
        self._broker = broker
        self._store = store
        self._catalog = catalog
        self._models = models
        self._hub = hub
        self._submitter = submitter
        self.fanout = Coordinator(
            broker, store, hub, submitter, submitter.outbox, publish_timeout=publish_timeout
        )
        self.fanout.register(jobs_pb2.JOB_KIND_SEARCH, SearchPlan())
        self.fanout.discard_model = lambda model_id: models.delete(model_id, force=True)
        self.fanout.register(jobs_pb2.JOB_KIND_SCORE, ScorePlan())

    async def _call(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.to_thread(fn, *args)

    async def Train(
        self, request: jobs_pb2.TrainRequest, context: Context
    ) -> AsyncIterator[jobs_pb2.TrainResponse]:
        with tracing.span("validate"):
            if not request.dataset_id:
                raise InvalidField("dataset_id", "is required")
            plan(request, await self._call(self._catalog.describe, request.dataset_id))
            if request.model_name:
                # A name belongs to whoever trained it first: nobody else adds its versions.
                await self._models.claim(request.model_name)
        job = _new_job(jobs_pb2.JOB_KIND_TRAIN)
        job.train.CopyFrom(request)
        async for seen in self._submit(job):
            yield jobs_pb2.TrainResponse(event=seen)

    async def Predict(
        self, request: jobs_pb2.PredictRequest, context: Context
    ) -> AsyncIterator[jobs_pb2.PredictResponse]:
        started = time.perf_counter()  # its per-version latency runs from here
        with tracing.span("validate"):
            routed = await self._models.route(request.model_id, request.routing_key)
            model_id = routed.model_id
            if request.rows and request.columns:
                raise InvalidField("columns", "send the rows as rows or as columns, not both")
            count = row_count(request)
            if count > self._max_predict_rows:
                raise ResourceExhausted(
                    f"{count} rows is over the limit of "
                    f"{self._max_predict_rows} per request; split the request"
                )
            record = await self._models.manifest(model_id)
            read = [from_struct(row) for row in request.rows]
            check_predict(request, record, read)
        # Queued for the drift thread (server.drift), which bins the rows as read.
        drift_of(self._models).offer_predict(
            record, (routed.name, routed.version), request, read, count
        )
        job = _new_job(jobs_pb2.JOB_KIND_PREDICT)
        job.predict.CopyFrom(request)
        # Workers get the id the reference means now: an alias moved later changes nothing
        # for this job, and the result names the model that answered.
        job.predict.model_id = model_id
        job.predict.resolved_name = routed.name
        job.predict.resolved_version = routed.version
        job.predict.resolved_alias = routed.alias
        submitted = self._submit(job, model_sha=record.sha256)
        mirror = mirror_of(self._models)
        events = followed(submitted, routed, request, record, mirror, started)
        async with contextlib.aclosing(events) as counted:
            async for seen in counted:
                yield jobs_pb2.PredictResponse(event=seen)

    async def Score(
        self, request: jobs_pb2.ScoreRequest, context: Context
    ) -> AsyncIterator[jobs_pb2.ScoreResponse]:
        with tracing.span("validate"):
            checked, rows = await checked_score(request, self._catalog, self._models)
        job = _new_job(jobs_pb2.JOB_KIND_SCORE)
        job.score.CopyFrom(checked)
        job.row_count = rows  # the rows the shards split (server.scoring)
        async for seen in self._submit(job, parent=True):
            yield jobs_pb2.ScoreResponse(event=seen)

    async def Search(
        self, request: jobs_pb2.SearchRequest, context: Context
    ) -> AsyncIterator[jobs_pb2.SearchResponse]:
        with tracing.span("validate"):
            if not request.train.dataset_id:
                raise InvalidField("train.dataset_id", "is required")
            schema = await self._call(self._catalog.describe, request.train.dataset_id)
            # On a thread: planning the candidates imports scikit-learn the first time.
            resolved = await self._call(resolve_search, request, schema)
            if request.train.model_name:
                await self._models.claim(request.train.model_name)
        job = _new_job(jobs_pb2.JOB_KIND_SEARCH)
        job.search.CopyFrom(resolved)
        async for seen in self._submit(job, parent=True):
            yield jobs_pb2.SearchResponse(event=seen)

    async def _submit(
        self, job: jobs_pb2.Job, *, model_sha: str = "", parent: bool = False
    ) -> AsyncIterator[jobs_pb2.JobEvent]:
        # Followed before it is recorded, from its QUEUED event: the feed reads the store only
        # when the job's next event wakes it.
        follow = self._hub.follow(job.id, 0, first=job.last_event)
        async with contextlib.aclosing(follow) as events:
            queued = await anext(events)
            if parent:
                await self.fanout.submit(job)  # coordinated here, never queued (server.fanout)
            else:
                await self._submitter.submit(job, model_sha=model_sha)
            yield queued
            async for seen in events:
                yield seen

    async def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: Context
    ) -> jobs_pb2.GetJobResponse:
        # Bounded: one huge prediction must not exceed what a default client accepts.
        return jobs_pb2.GetJobResponse(job=bounded(visible_job(await self._job(request.job_id))))

    async def _job(self, job_id: str) -> jobs_pb2.Job:
        check_job_id(job_id)
        job = await self._call(self._store.get, job_id)
        if job is None:
            raise NotFound(f"job {job_id} does not exist")
        return job

    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: Context
    ) -> jobs_pb2.ListJobsResponse:
        if request.kind not in jobs_pb2.JobKind.values():
            raise InvalidField("kind", f"unknown job kind {request.kind}")
        if request.state not in jobs_pb2.JobState.values():
            raise InvalidField("state", f"unknown job state {request.state}")
        if request.parent_job_id:
            check_job_id(request.parent_job_id, "parent_job_id")
        size = page_size(request.page_size)
        jobs, token = await self._call(
            lambda: self._store.list(
                kind=request.kind,
                state=request.state,
                page_size=size,
                page_token=request.page_token,
                parent_job_id=request.parent_job_id,
            )
        )
        return jobs_pb2.ListJobsResponse(jobs=map(visible_job, jobs), next_page_token=token)

    async def CancelJob(
        self, request: jobs_pb2.CancelJobRequest, context: Context
    ) -> jobs_pb2.CancelJobResponse:
        check_may_cancel(await self._job(request.job_id))
        # Workers are told at once; a parent's unfinished children are cancelled with it.
        job = await self.fanout.cancel(request.job_id)
        if job is None:
            raise NotFound(f"job {request.job_id} does not exist")
        return jobs_pb2.CancelJobResponse(job=visible_job(job))

    async def WatchJob(
        self, request: jobs_pb2.WatchJobRequest, context: Context
    ) -> AsyncIterator[jobs_pb2.WatchJobResponse]:
        if request.after_seq < 0:
            raise InvalidField("after_seq", "must not be negative")
        job = await self._job(request.job_id)
        full = sees_inputs(job)
        async with contextlib.aclosing(self._hub.follow(job.id, request.after_seq)) as events:
            async for seen in events:
                yield jobs_pb2.WatchJobResponse(event=visible_event(seen, full))


def _new_job(kind: jobs_pb2.JobKind.ValueType) -> jobs_pb2.Job:
    return queued_job(new_job_id(), kind, owner_name())
