"""What a gateway reports of itself: its dependencies, the workers alive and the queues' depth."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlgate.v1 import status_pb2

__all__ = ["Dependency", "QueueFigures", "Status", "waiting_note"]


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
