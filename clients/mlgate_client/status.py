"""What a gateway reports of itself: its dependencies, the workers alive (and, from their
heartbeats, who they are and what they run) and the queues' depth."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mlgate.v1 import status_pb2
from mlgate_client.results import kind_name, stage_name, timestamp

__all__ = ["Dependency", "QueueFigures", "RunningJob", "Status", "Worker", "waiting_note"]


@dataclass(frozen=True)
class Dependency:
    name: str
    kind: str
    healthy: bool
    detail: str


@dataclass(frozen=True)
class QueueFigures:
    name: str
    depth: int
    consumers: int


@dataclass(frozen=True)
class Status:
    version: str
    dependencies: tuple[Dependency, ...]
    workers: int
    queues: tuple[QueueFigures, ...]
    proto: status_pb2.GetStatusResponse = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, status: status_pb2.GetStatusResponse) -> Status:
        return cls(
            version=status.version,
            dependencies=tuple(
                Dependency(d.name, d.kind, d.healthy, d.detail) for d in status.dependencies
            ),
            workers=status.workers,
            queues=tuple(QueueFigures(q.name, q.depth, q.consumers) for q in status.queues),
            proto=status,
        )

    @property
    def healthy(self) -> bool:
        return all(d.healthy for d in self.dependencies)

    def queue(self, name: str) -> QueueFigures | None:
        return next((q for q in self.queues if q.name == name), None)


def waiting_note(status: Status, queue: str) -> str:
    """Why a queued job may not be moving, or "" when a worker is there to take it."""
    figures = status.queue(queue)
    if figures is not None and figures.consumers > 0:
        return ""
    return (
        f"no worker is consuming the {queue} queue, so this job waits until one starts "
        "(`mlgate worker` with the gateway's broker settings)"
    )


@dataclass(frozen=True)
class RunningJob:
    """One attempt at a job that a worker is running, as its latest heartbeat says."""

    job_id: str
    kind: str
    attempt: int
    stage: str
    progress: float
    start_time: datetime | None


@dataclass(frozen=True)
class Worker:
    """One worker process the gateway hears: who it is, what it runs, when it was last heard."""

    id: str
    host: str
    pid: int
    broker: str
    running: tuple[RunningJob, ...]
    #: Seconds since the gateway last heard it; it is counted out past ``heartbeat_interval``.
    heartbeat_age: float
    heartbeat_interval: float
    start_time: datetime | None
    max_attempts: int
    version: str
    proto: status_pb2.Worker = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, worker: status_pb2.Worker) -> Worker:
        return cls(
            id=worker.id,
            host=worker.host,
            pid=worker.pid,
            broker=worker.broker,
            running=tuple(
                RunningJob(
                    r.job_id,
                    kind_name(r.kind),
                    r.attempt,
                    stage_name(r.stage),
                    r.progress,
                    timestamp(r.start_time),
                )
                for r in worker.running
            ),
            heartbeat_age=worker.heartbeat_age_seconds,
            heartbeat_interval=worker.heartbeat_interval_seconds,
            start_time=timestamp(worker.start_time),
            max_attempts=worker.max_attempts,
            version=worker.version,
            proto=worker,
        )
