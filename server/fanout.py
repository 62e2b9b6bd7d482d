"""Fan-out jobs: a parent job (SEARCH, SCORE) whose work is done by child jobs (TRIAL, SHARD, and
any other kind, such as a search's refit TRAIN), coordinated by the gateways.

A parent is recorded like any job (``Coordinator.submit``), but never goes to a worker queue: the
outbox leaves it alone (``is_parent``) and ``requeue_unfinished`` skips it. Its progress is
decided by a **plan** registered for its kind (``Coordinator.register``), and carried out here:

* ``FanOutPlan.advance(parent, children) -> Step`` is a pure function of the parent's record and
  its children's records (``JobStore.children``, oldest first, whatever their state). It returns
  the ``Step`` the parent is at: every child the parent needs by now (``Step.children``, whole
  ``Job`` protos built with ``new_child``; those that exist already are skipped), the fields of
  its RUNNING event (``Step.progress``: stage, progress, search_progress ...), and, once the
  work is done, the outcome: ``Step.result`` (the SUCCEEDED event's fields, e.g.
  ``{"search_result": ...}``) or ``Step.error`` (a ``JobError``: FAILED with the true reason).
  ``FanOutPlan.start(parent)`` is ``advance(parent, [])``.
* Children are created through ``Submitter.submit``, the path of user submissions: recorded with
  an outbox mark, then published, so an accepted child is never lost even if the gateway dies.
  A child's id is ``child_id(parent_id, key)``: a uuid5 of the parent and the plan's key for it,
  so two gateways, or a step tried again, create the same child once (``JobExists`` is a no-op).
* ``Step.max_parallel`` (0: unbounded) bounds the children outstanding: created, not ended. The
  rest of ``Step.children`` is created, in order, as earlier ones end.
* The parent's events are numbered from its children: a RUNNING event has the seq
  ``attempt_seq(1, 1 + ended children)``, the outcome ``terminal_seq(1)``. Whoever computes a step
  computes the same event under the same seq, so a duplicate (two gateways advancing the parent
  at once) is dropped by the store.
* Advancing happens when a child's terminal event is recorded (``server.recorder`` tells the hub,
  which calls ``child_ended``), when a parent is submitted, and on every gateway's sweep (run with
  the outbox's, every few seconds): each QUEUED or RUNNING parent of a registered kind is advanced,
  so a gateway that died after recording a child's end cannot leave its parent stuck.
* ``cancel`` ends a job through the cancel path of CancelJob (store, streams, workers told at
  once); for a parent it then cancels every unfinished child the same way, so a running child
  stops within a second.

Only the gateway runs this: a plan must not import scikit-learn at module level.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from brokers.base import Broker
from mlgate.errors import AlreadyExists
from mlgate.events import attempt_seq, event, is_terminal, queued_job, terminal_seq
from mlgate.metrics import job_ended
from mlgate.store_errors import JobStoreError
from mlgate.v1 import jobs_pb2
from server.hub import Hub
from server.jobstore.base import JobStore
from server.submit import Submitter

if TYPE_CHECKING:
    from server.outbox import Outbox

__all__ = [
    "PARENT_KINDS",
    "Coordinator",
    "FanOutPlan",
    "Step",
    "child_id",
    "is_parent",
    "new_child",
]

log = logging.getLogger(__name__)

#: Kinds of job coordinated by the gateways rather than run by a worker.
PARENT_KINDS = frozenset({jobs_pb2.JOB_KIND_SEARCH, jobs_pb2.JOB_KIND_SCORE})

_NAMESPACE = uuid.UUID("6f1c6d2e-7a4b-5c8e-9d0f-1a2b3c4d5e6f")


def is_parent(kind: int) -> bool:
    return kind in PARENT_KINDS


def child_id(parent_id: str, key: str) -> str:
    """The id of ``parent_id``'s child known to its plan as ``key``: the same every time."""
    return f"job_{uuid.uuid5(_NAMESPACE, f'{parent_id}/{key}').hex}"


def new_child(parent: jobs_pb2.Job, kind: jobs_pb2.JobKind.ValueType, key: str) -> jobs_pb2.Job:
    """A QUEUED child of ``parent`` (its spec left for the plan to set), owned as its parent."""
    return queued_job(child_id(parent.id, key), kind, parent.owner, parent.id)


@dataclass(frozen=True)
class Step:
    """Where a parent is: see the module's docstring."""

    children: Sequence[jobs_pb2.Job] = ()
    progress: Mapping[str, Any] | None = None
    result: Mapping[str, Any] | None = None
    error: jobs_pb2.JobError | None = None
    max_parallel: int = 0
    # Extra fields of the outcome event (a message).
    outcome_fields: Mapping[str, Any] = field(default_factory=dict)


class FanOutPlan(Protocol):
    def advance(self, parent: jobs_pb2.Job, children: Sequence[jobs_pb2.Job]) -> Step: ...


class Coordinator:
    """Creates parents' children and records parents' events; see the module's docstring."""

    def __init__(
        self,
        broker: Broker,
        store: JobStore,
        hub: Hub,
        submitter: Submitter,
        outbox: Outbox | None,
        *,
        publish_timeout: float,
    ) -> None:
        self._broker = broker
        self._store = store
        self._hub = hub
        self._submitter = submitter
        self._publish_timeout = publish_timeout
        self._plans: dict[int, FanOutPlan] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Deletes a model and its registered version (the servicer's ModelCatalog): what a
        #: cancelled parent's children registered before the cancel goes with it.
        self.discard_model: Callable[[str], Awaitable[object]] | None = None
        hub.on_child_ended = self.child_ended
        if outbox is not None:
            outbox.also_sweep(self.sweep)

    def register(self, kind: int, plan: FanOutPlan) -> None:
        self._plans[kind] = plan

    async def submit(self, parent: jobs_pb2.Job) -> None:
        """Record ``parent`` and take its first step; the caller follows it in the hub."""
        parent.DiscardUnknownFields()
        await asyncio.to_thread(self._store.create, parent)
        # Recorded: from here on, a step that fails now is taken by a sweep.
        await self._advance_logged(parent.id)

    def child_ended(self, parent_id: str) -> None:
        """A child of ``parent_id`` ended (on the loop): advance the parent soon."""
        task = asyncio.get_running_loop().create_task(self._advance_logged(parent_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _advance_logged(self, parent_id: str) -> None:
        try:
            await self.advance(parent_id)
        except Exception:
            # The sweep advances it later.
            log.exception("job %s: advancing failed", parent_id)

    async def sweep(self) -> None:
        """Advance every unfinished parent of a registered kind (any gateway's)."""
        for kind in list(self._plans):
            for state in (jobs_pb2.JOB_STATE_QUEUED, jobs_pb2.JOB_STATE_RUNNING):
                token = ""
                while True:
                    listed, token = await asyncio.to_thread(self._page, kind, state, token)
                    for parent in listed:
                        await self._advance_logged(parent.id)
                    if not token:
                        break

    def _page(self, kind: int, state: int, token: str) -> tuple[list[jobs_pb2.Job], str]:
        return self._store.list(kind=kind, state=state, page_size=200, page_token=token)

    async def advance(self, parent_id: str) -> None:
        """Take ``parent_id``'s plan one step as far as its children allow (one at a time per
        parent in this gateway; across gateways the ids and seqs make it idempotent)."""
        lock = self._locks.setdefault(parent_id, asyncio.Lock())
        try:
            async with lock:
                await self._advance(parent_id)
        finally:
            if not lock.locked() and self._locks.get(parent_id) is lock:
                del self._locks[parent_id]

    async def _advance(self, parent_id: str) -> None:
        parent = await asyncio.to_thread(self._store.get, parent_id)
        if parent is None or is_terminal(parent.state):
            return
        plan = self._plans.get(parent.kind)
        if plan is None:
            return
        children = await asyncio.to_thread(self._store.children, parent_id)
        try:
            step = plan.advance(parent, children)
        except Exception as exc:
            log.exception("job %s: its plan failed", parent_id)
            error = jobs_pb2.JobError(code="INTERNAL", message=f"the gateway failed: {exc}")
            await self._record(
                event(
                    parent_id,
                    terminal_seq(1),
                    jobs_pb2.JOB_STATE_FAILED,
                    attempt=1,
                    error=error,
                    message=error.message,
                )
            )
            return
        if step.result is not None or step.error is not None:
            await self._finish(parent_id, step)
            return
        existing = {child.id: child for child in children}
        outstanding = sum(1 for c in children if not is_terminal(c.state))
        created = 0
        for child in step.children:
            if child.id in existing:
                continue
            if step.max_parallel and outstanding >= step.max_parallel:
                break
            await self._create(child)
            outstanding += 1
            created += 1
        if created:
            # A cancel that came while these were created did not see them: cancel them too.
            now = await asyncio.to_thread(self._store.get, parent_id)
            if now is not None and now.state == jobs_pb2.JOB_STATE_CANCELLED:
                await self.cancel_children(parent_id)
                return
        if step.progress is not None:
            ended = sum(1 for c in children if is_terminal(c.state))
            seq = attempt_seq(1, 1 + ended)
            await self._record(
                event(parent_id, seq, jobs_pb2.JOB_STATE_RUNNING, attempt=1, **step.progress)
            )

    async def _create(self, child: jobs_pb2.Job) -> None:
        # Another gateway, or an earlier try of this step, may have created it.
        with contextlib.suppress(AlreadyExists):
            await self._submitter.submit(child)

    async def _finish(self, parent_id: str, step: Step) -> None:
        if step.error is not None:
            state = jobs_pb2.JOB_STATE_FAILED
            fields: dict[str, Any] = {"error": step.error, "message": step.error.message}
        else:
            state = jobs_pb2.JOB_STATE_SUCCEEDED
            fields = dict(step.result or {})
        fields.update(step.outcome_fields)
        await self._record(event(parent_id, terminal_seq(1), state, attempt=1, **fields))

    async def _record(self, seen: jobs_pb2.JobEvent) -> None:
        recorded = await asyncio.to_thread(self._store.record, seen)
        if recorded is None:
            return  # recorded already (another gateway), or the parent has ended
        if recorded.logged is not None:
            self._hub.extend(seen.job_id, recorded.logged, recorded.after_seq)
        else:
            self._hub.notify(seen.job_id, seen.seq)
        if is_terminal(recorded.job.state):
            job_ended(recorded.job)

    async def cancel(
        self, job_id: str, message: str = "cancelled by request"
    ) -> jobs_pb2.Job | None:
        """End ``job_id`` CANCELLED if it has not ended, telling its streams and the workers; for
        a parent, then every unfinished child. The job as it is afterwards (None: no such job)."""
        job = await self._cancel_one(job_id, message)
        if job is not None and is_parent(job.kind) and job.state == jobs_pb2.JOB_STATE_CANCELLED:
            await self.cancel_children(job_id)
        return job

    async def cancel_children(self, parent_id: str) -> None:
        """Cancel every unfinished child of ``parent_id``."""
        children = await asyncio.to_thread(self._store.children, parent_id)
        for child in children:
            if not is_terminal(child.state):
                with contextlib.suppress(JobStoreError):
                    await self._cancel_one(child.id, f"its parent job {parent_id} was cancelled")
            elif child.last_event.train_result.model_id and self.discard_model is not None:
                # A search's refit that ended just before the cancel: a cancelled search
                # registers no model.
                try:
                    await self.discard_model(child.last_event.train_result.model_id)
                except Exception as exc:
                    log.warning("job %s: its child's model was not removed: %s", parent_id, exc)

    async def _cancel_one(self, job_id: str, message: str) -> jobs_pb2.Job | None:
        cancel = event(job_id, 0, jobs_pb2.JOB_STATE_CANCELLED, message=message)
        job = await asyncio.to_thread(self._store.cancel, job_id, cancel)
        if job is None:
            return None
        if job.state == jobs_pb2.JOB_STATE_CANCELLED and job.last_event.seq == cancel.seq:
            job_ended(job)
            self._hub.notify(job.id)
            # Tell the workers, so a queued copy is skipped and a running fit is stopped; a
            # parent's too, so its running children stop (and write nothing more) at once,
            # before the cascade has reached each of them.
            body = cancel.SerializeToString()
            await asyncio.to_thread(
                lambda: self._broker.publish_event(body, timeout=self._publish_timeout)
            )
        return job
