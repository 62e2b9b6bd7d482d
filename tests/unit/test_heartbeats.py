"""Heartbeats on the embedded broker: a worker is heard, counted out within its interval once it
stops answering (its running attempts told why they will be tried again), and at once, without
that, when it says it stops."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from brokers.memory import MemoryBroker
from mlgate.events import retry_note_seq
from mlgate.v1 import jobs_pb2
from server.heartbeats import Heartbeats
from tests.support.waiting import wait_for
from workers.attempt_events import AttemptEvents
from workers.heartbeat import Heartbeat
from workers.progress import Pacer
from workers.running import RunningJobs

INTERVAL = 0.6


@pytest.fixture
def broker() -> Iterator[MemoryBroker]:
    broker = MemoryBroker()
    broker.start()
    yield broker
    broker.close()


@pytest.fixture
def gateway(broker: MemoryBroker) -> Iterator[Heartbeats]:
    heard = Heartbeats(broker, publish_timeout=5)
    heard.start()
    yield heard
    heard.stop()


def _worker(broker: MemoryBroker, running: RunningJobs | None = None) -> Heartbeat:
    return Heartbeat(broker, running or RunningJobs(), interval=INTERVAL, max_attempts=3)


def _losses() -> float:
    return REGISTRY.get_sample_value("mlgate_worker_losses_total") or 0.0


def _running(kind: str) -> float | None:
    return REGISTRY.get_sample_value("mlgate_jobs_running", {"kind": kind})


def test_a_worker_is_heard_then_counted_out_at_once_when_it_says_it_stops(
    broker: MemoryBroker, gateway: Heartbeats
) -> None:
    worker = _worker(broker)
    worker.start()
    wait_for(lambda: len(gateway.workers()) == 1, 5, "the worker heard")
    (seen,) = gateway.workers()
    assert (seen.id, seen.broker, seen.max_attempts) == (worker.identity.id, "memory", 3)
    assert seen.heartbeat_interval_seconds == INTERVAL
    assert 0 <= seen.heartbeat_age_seconds < INTERVAL
    before = _losses()
    worker.stop()
    wait_for(lambda: not gateway.workers(), INTERVAL / 2, "counted out on its last heartbeat")
    assert _losses() == before  # a worker that stops is not lost


def test_a_silent_worker_is_counted_out_within_its_interval_and_its_job_told_why(
    broker: MemoryBroker, gateway: Heartbeats
) -> None:
    events: queue.Queue[bytes] = queue.Queue()
    watching = broker.watch_events(events.put)
    job = jobs_pb2.Job(id="job_1", kind=jobs_pb2.JOB_KIND_TRAIN)
    attempt = AttemptEvents(broker, job, 1, 5, 3, Pacer())
    attempt.stage, attempt.progress = jobs_pb2.STAGE_FITTING, 0.27
    running = RunningJobs()
    worker = _worker(broker, running)
    before = _losses()
    with running.track(job, 1, attempt):
        # One heartbeat, then silence as after a SIGKILL: no more, and no last word.
        worker.beat()
        silenced = time.monotonic()
        wait_for(lambda: len(gateway.workers()) == 1, 5, "the worker heard")
        assert _running("train") == 1
        wait_for(lambda: not gateway.workers(), 2 * INTERVAL, "the worker counted out")
    assert time.monotonic() - silenced <= INTERVAL + 0.2
    assert _losses() == before + 1
    assert _running("train") == 0
    note = jobs_pb2.JobEvent.FromString(events.get(timeout=5))
    assert (note.job_id, note.seq, note.attempt) == ("job_1", retry_note_seq(1), 1)
    assert (note.state, note.stage) == (jobs_pb2.JOB_STATE_RUNNING, jobs_pb2.STAGE_AWAITING_RETRY)
    assert note.progress == 0.27 and note.max_attempts == 3
    assert note.retry_reason == "the worker running attempt 1 stopped answering"
    assert note.message == (
        "the worker running attempt 1 stopped answering; "
        "the broker delivers the job again, as attempt 2 of 3"
    )
    watching.cancel(5)


def test_nobody_is_counted_out_while_the_gateway_cannot_hear(
    broker: MemoryBroker, gateway: Heartbeats, monkeypatch: pytest.MonkeyPatch
) -> None:
    _worker(broker).beat()
    wait_for(lambda: len(gateway.workers()) == 1, 5, "the worker heard")
    monkeypatch.setattr(broker, "healthy", lambda: False)
    time.sleep(3 * INTERVAL)  # what is tested is that nothing happens meanwhile
    assert len(gateway.workers()) == 1
    monkeypatch.undo()
    wait_for(lambda: not gateway.workers(), 2 * INTERVAL, "counted out once it could be heard")


def test_what_is_not_a_heartbeat_is_ignored(broker: MemoryBroker, gateway: Heartbeats) -> None:
    broker.publish_heartbeat(b"\xff not a heartbeat")
    worker = _worker(broker)
    worker.start()
    wait_for(lambda: len(gateway.workers()) == 1, 5, "the worker heard after it")
    worker.stop()


def test_the_workers_count_falls_back_on_the_broker_only_at_first(broker: MemoryBroker) -> None:
    now = [0.0]
    heard = Heartbeats(broker, publish_timeout=5, clock=lambda: now[0])
    heard.start()
    try:
        # No worker heard yet: the broker's consumers are the best count there is.
        assert heard.alive(2) == 2
        now[0] = 10.0  # past the first interval: whoever was alive has been heard
        assert heard.alive(2) == 0
    finally:
        heard.stop()
