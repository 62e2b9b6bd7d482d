"""The oldest waiting job's age, where the broker cannot tell it, read from the job store: the
broker's own figure kept where it has one, 0 when nothing waits, left out while the store is down.
(tests/ops/test_autoscaling.py sees it on /metrics with gateway and worker processes.)"""

from __future__ import annotations

from pathlib import Path

from brokers.base import PREDICT_QUEUE, TRAIN_QUEUE, BrokerStats, QueueStats
from server.jobstore.sqlite import SQLiteJobStore
from server.queue_ages import with_waiting_ages
from tests.support.jobstores import queued_job

NOW = 1_700_000_100.0


def _ages(stats: BrokerStats) -> dict[str, float | None]:
    return {queue.name: queue.oldest_seconds for queue in stats.queues}


def test_ages_the_broker_cannot_tell_come_from_the_oldest_queued_job(tmp_path: Path) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.db")
    unknown = BrokerStats((QueueStats(TRAIN_QUEUE, 2, 0), QueueStats(PREDICT_QUEUE, 0, 0)))
    try:
        assert _ages(with_waiting_ages(unknown, store, NOW)) == {
            TRAIN_QUEUE: 0.0,
            PREDICT_QUEUE: 0.0,
        }
        for seconds_ago in (30, 90, 60):
            store.create(queued_job(created_ns=int((NOW - seconds_ago) * 1e9)))
        store.create(queued_job(rows=1, created_ns=int((NOW - 5) * 1e9)))
        filled = with_waiting_ages(unknown, store, NOW)
        assert _ages(filled) == {TRAIN_QUEUE: 90.0, PREDICT_QUEUE: 5.0}
        assert [(q.depth, q.consumers) for q in filled.queues] == [(2, 0), (0, 0)]

        # A broker that tells its own ages is believed, not the store.
        told = BrokerStats((QueueStats(TRAIN_QUEUE, 2, 0, 1.5), QueueStats(PREDICT_QUEUE, 0, 0)))
        assert _ages(with_waiting_ages(told, store, NOW)) == {
            TRAIN_QUEUE: 1.5,
            PREDICT_QUEUE: 5.0,
        }
    finally:
        store.close()
    # A store that cannot answer: no guess, and the rest of the figures stand.
    down = with_waiting_ages(unknown, store, NOW)
    assert _ages(down) == {TRAIN_QUEUE: None, PREDICT_QUEUE: None}
    assert down.queues[0].depth == 2
