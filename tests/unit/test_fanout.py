"""The fan-out coordinator (server/fanout.py) on a real SQLite job store: children created once
under deterministic ids however often a step is taken, the max_parallel window, the parent's
events numbered from its ended children (so a second advance adds nothing), the outcome, and the
cancel cascade."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from mlgate.events import QUEUED_SEQ, attempt_seq, event, terminal_seq
from mlgate.v1 import jobs_pb2
from server.fanout import Coordinator, Step, child_id, new_child
from server.hub import Hub
from server.jobstore.sqlite import SQLiteJobStore
from server.submit import Submitter


class _Submitter:
    """Records children as Submitter does, and counts them; no broker in a unit test."""

    def __init__(self, store: SQLiteJobStore) -> None:
        self.store = store
        self.submitted: list[str] = []

    async def submit(self, job: jobs_pb2.Job, **_: Any) -> None:
        await asyncio.to_thread(self.store.create, job)
        self.submitted.append(job.id)


class _Broker:
    def __init__(self) -> None:
        self.events: list[bytes] = []

    def publish_event(self, body: bytes, timeout: float) -> None:
        self.events.append(body)


class _Plan:
    """Five children; once all have ended, the outcome."""

    def advance(self, parent: jobs_pb2.Job, children: Sequence[jobs_pb2.Job]) -> Step:
        wanted = [new_child(parent, jobs_pb2.JOB_KIND_TRIAL, f"c{i}") for i in range(5)]
        ended = [c for c in children if c.state == jobs_pb2.JOB_STATE_SUCCEEDED]
        if len(ended) == 5:
            return Step(result={"message": "all five"})
        progress = {"stage": jobs_pb2.STAGE_FANNING_OUT, "progress": len(ended) / 5}
        return Step(children=wanted, progress=progress, max_parallel=2)


def _parent() -> jobs_pb2.Job:
    queued = event("job_" + "a" * 32, QUEUED_SEQ, jobs_pb2.JOB_STATE_QUEUED)
    return jobs_pb2.Job(
        id=queued.job_id,
        kind=jobs_pb2.JOB_KIND_SEARCH,
        state=jobs_pb2.JOB_STATE_QUEUED,
        last_event=queued,
        create_time=queued.time,
    )


def _coordinator(
    store: SQLiteJobStore, submitter: _Submitter, broker: _Broker | None = None
) -> Coordinator:
    """A Coordinator that runs ``_Plan`` for searches (built inside the test's event loop)."""
    coordinator = Coordinator(
        cast(Any, _Broker() if broker is None else broker),
        store,
        Hub(store.events),
        cast(Submitter, submitter),
        None,
        publish_timeout=1.0,
    )
    coordinator.register(jobs_pb2.JOB_KIND_SEARCH, _Plan())
    return coordinator


def test_a_parent_fans_out_once_within_its_window_then_ends(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.db")
    submitter = _Submitter(store)
    broker = _Broker()

    async def scenario() -> None:
        coordinator = _coordinator(store, submitter, broker)
        parent = _parent()
        await coordinator.submit(parent)
        # Taken again, at once and twice more: the same two children, nothing new.
        await asyncio.gather(coordinator.advance(parent.id), coordinator.advance(parent.id))
        ids = [child_id(parent.id, f"c{i}") for i in range(5)]
        assert submitter.submitted == ids[:2]
        assert [e.seq for e in store.events(parent.id, 0)] == [QUEUED_SEQ, attempt_seq(1, 1)]
        for index, child in enumerate(ids):
            store.record(event(child, 2, jobs_pb2.JOB_STATE_SUCCEEDED))
            await coordinator.advance(parent.id)
            await coordinator.advance(parent.id)
            if index < 4:
                assert submitter.submitted == ids[: min(5, index + 3)]
        seqs = [e.seq for e in store.events(parent.id, 0)]
        assert seqs == [QUEUED_SEQ, *(attempt_seq(1, 1 + n) for n in range(5)), terminal_seq(1)]
        done = store.get(parent.id)
        assert done is not None and done.state == jobs_pb2.JOB_STATE_SUCCEEDED
        assert done.last_event.message == "all five"
        assert all(store.get(i).parent_job_id == parent.id for i in ids)  # type: ignore[union-attr]

    asyncio.run(scenario())


def test_cancelling_a_parent_cancels_its_unfinished_children(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.db")
    submitter = _Submitter(store)
    broker = _Broker()

    async def scenario() -> None:
        coordinator = _coordinator(store, submitter, broker)
        parent = _parent()
        await coordinator.submit(parent)
        first, second = submitter.submitted
        store.record(event(first, 2, jobs_pb2.JOB_STATE_SUCCEEDED))
        cancelled = await coordinator.cancel(parent.id)
        assert cancelled is not None and cancelled.state == jobs_pb2.JOB_STATE_CANCELLED
        states = {i: store.get(i).state for i in (first, second)}  # type: ignore[union-attr]
        assert states == {
            first: jobs_pb2.JOB_STATE_SUCCEEDED,
            second: jobs_pb2.JOB_STATE_CANCELLED,
        }
        # The workers were told of both cancels: the parent's first, the unfinished child's.
        told = [jobs_pb2.JobEvent.FromString(body).job_id for body in broker.events]
        assert told == [parent.id, second]
        await coordinator.advance(parent.id)  # an ended parent creates nothing more
        assert len(submitter.submitted) == 2

    asyncio.run(scenario())


def test_a_sweep_takes_the_step_a_dead_gateway_left(tmp_path: Path) -> None:
    """A child's end recorded by a gateway that died before advancing its parent: any gateway's
    sweep takes the step."""
    store = SQLiteJobStore(tmp_path / "jobs.db")
    submitter = _Submitter(store)

    async def scenario() -> None:
        coordinator = _coordinator(store, submitter)
        parent = _parent()
        await coordinator.submit(parent)
        store.record(event(submitter.submitted[0], 2, jobs_pb2.JOB_STATE_SUCCEEDED))
        await coordinator.sweep()
        assert len(submitter.submitted) == 3
        assert store.events(parent.id, 0)[-1].seq == attempt_seq(1, 2)

    asyncio.run(scenario())


def test_a_cancelled_parent_discards_the_model_a_child_registered(tmp_path: Path) -> None:
    """A refit that ended just before its search was cancelled: its model goes."""
    store = SQLiteJobStore(tmp_path / "jobs.db")
    submitter = _Submitter(store)
    discarded: list[str] = []

    async def discard(model_id: str) -> None:
        discarded.append(model_id)

    async def scenario() -> None:
        coordinator = _coordinator(store, submitter)
        coordinator.discard_model = discard
        parent = _parent()
        await coordinator.submit(parent)
        first, _ = submitter.submitted
        result = jobs_pb2.TrainResult(model_id="mdl_" + "b" * 32)
        store.record(event(first, 2, jobs_pb2.JOB_STATE_SUCCEEDED, train_result=result))
        await coordinator.cancel(parent.id)
        assert discarded == [result.model_id]

    asyncio.run(scenario())
