"""How long the oldest job of each work queue has waited, from the job store where the broker cannot
tell (for ``mlgate_queue_oldest_seconds``).

A broker that can read its oldest waiting message's age without taking it reports it, and that
figure is kept. Where it cannot, the job store can: the oldest job of the queue's kind that no
worker has reported on (``JobStore.oldest_queued``), aged by this gateway's clock against the
create time its gateway gave it (gateways' clocks are assumed close). The store's figure leaves
out a job that went back to the queue for another attempt (it stays RUNNING in the store), and
counts a job recorded and not yet published, which waits as much as a queued one.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from brokers.base import PREDICT_QUEUE, TRAIN_QUEUE, BrokerStats
from mlgate.store_errors import JobStoreError
from mlgate.v1 import jobs_pb2
from server.jobstore.base import JobStore

__all__ = ["QUEUE_KINDS", "with_waiting_ages"]

log = logging.getLogger(__name__)

#: The kind of job each work queue carries.
QUEUE_KINDS: dict[str, int] = {
    TRAIN_QUEUE: jobs_pb2.JOB_KIND_TRAIN,
    PREDICT_QUEUE: jobs_pb2.JOB_KIND_PREDICT,
}


def with_waiting_ages(stats: BrokerStats, store: JobStore, now: float | None = None) -> BrokerStats:
    """``stats`` with every queue age the broker could not tell (``oldest_seconds`` None) read
    from ``store``: 0.0 when no job of that kind waits. A store that cannot answer leaves it None,
    so the metric is left out rather than guessed."""
    now = time.time() if now is None else now
    queues = []
    for queue in stats.queues:
        kind = QUEUE_KINDS.get(queue.name)
        if queue.oldest_seconds is None and kind is not None:
            try:
                created = store.oldest_queued(kind)
            except JobStoreError as exc:
                log.debug(
                    "the %s queue's oldest job: the job store cannot tell: %s", queue.name, exc
                )
            else:
                age = 0.0 if created is None else max(0.0, now - created.ToNanoseconds() / 1e9)
                queue = dataclasses.replace(queue, oldest_seconds=age)
        queues.append(queue)
    return dataclasses.replace(stats, queues=tuple(queues))
