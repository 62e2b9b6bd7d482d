"""What an operator asks a gateway: is it healthy, which of its dependencies is not, which
workers are alive (by their heartbeats, ``server.heartbeats``), how many jobs wait. Behind
``GetStatus`` and ``ListWorkers``, ``mlgate status`` and ``mlgate workers``, the health service and
the broker's metrics (``mlgate_workers``, ``mlgate_queue_depth``, ...).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc

from brokers.base import Broker, BrokerStats
from mlgate.v1 import status_pb2, status_pb2_grpc
from mlgate.version import installed_version
from server.error_mapping import Backends
from server.heartbeats import Heartbeats
from server.jobstore.base import JobStore
from server.queue_ages import with_waiting_ages
from storage.base import ObjectStore

__all__ = ["Dependencies", "StatusServicer"]

log = logging.getLogger(__name__)


class Dependencies:
    """Checks the broker, the job store and the object storage, each by a cheap call."""

    def __init__(
        self,
        backends: Backends,
        broker: Broker,
        store: JobStore,
        objects: ObjectStore,
        heartbeats: Heartbeats | None = None,
    ) -> None:
        #: The workers' heartbeats; without them, the broker's consumers count the workers.
        self.heartbeats = heartbeats
        self._broker = broker
        self._store = store
        self._objects = objects
        self._kinds = {
            "broker": backends.broker,
            "job_store": backends.job_store,
            "storage": backends.object_store,
        }

    def check(self) -> list[status_pb2.Dependency]:
        """One entry per dependency; blocking (a network round trip each at most)."""
        found = []
        for name, probe in (
            ("broker", self._probe_broker),
            ("job_store", self._store.ping),
            ("storage", self._objects.check),
        ):
            detail = ""
            try:
                probe()
            except Exception as exc:  # each backend raises its own tree; the text names it
                detail = str(exc) or type(exc).__name__
            found.append(
                status_pb2.Dependency(
                    name=name, kind=self._kinds[name], healthy=not detail, detail=detail
                )
            )
        return found

    def _probe_broker(self) -> None:
        if not self._broker.healthy():
            raise ConnectionError(f"the {self._kinds['broker']} broker is unreachable")

    def broker_figures(self) -> tuple[int, BrokerStats]:
        """(workers alive, the broker's stats) for the metrics collector; a queue age the broker
        cannot tell is read from the job store."""
        stats = with_waiting_ages(self._broker.stats(), self._store)
        return self.workers(stats), stats

    def workers(self, stats: BrokerStats) -> int:
        """The workers alive: those heard, or the broker's count of them."""
        # Every worker consumes every queue, so the busiest queue's consumer count is the
        # worker count as the broker sees it (a dead one may linger there for a while).
        consumers = max((q.consumers for q in stats.queues), default=0)
        return consumers if self.heartbeats is None else self.heartbeats.alive(consumers)


class StatusServicer(status_pb2_grpc.StatusServiceServicer):
    def __init__(self, dependencies: Dependencies, broker: Broker) -> None:
        self._dependencies = dependencies
        self._broker = broker

    async def GetStatus(
        self,
        request: status_pb2.GetStatusRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> status_pb2.GetStatusResponse:
        response = status_pb2.GetStatusResponse(version=installed_version())
        response.dependencies.extend(await asyncio.to_thread(self._dependencies.check))
        try:
            stats = await asyncio.to_thread(self._broker.stats)
        except Exception as exc:  # the broker entry above already says it is down
            log.debug("queue figures unavailable: %s", exc)
        else:
            response.workers = self._dependencies.workers(stats)
            for queue in stats.queues:
                response.queues.add(name=queue.name, depth=queue.depth, consumers=queue.consumers)
        return response

    async def ListWorkers(
        self,
        request: status_pb2.ListWorkersRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> status_pb2.ListWorkersResponse:
        heartbeats = self._dependencies.heartbeats
        workers = [] if heartbeats is None else heartbeats.workers()
        return status_pb2.ListWorkersResponse(workers=workers)
