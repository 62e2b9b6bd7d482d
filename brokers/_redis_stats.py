"""What the Redis broker tells ``stats``: each work stream's waiting jobs, live consumers and the
age of its oldest waiting entry, and its consumer group's lag and pending count."""

from __future__ import annotations

import contextlib
from typing import Any

import redis

from brokers._redis_keys import WORK_GROUP, Keys
from brokers._redis_link import stream_entries
from brokers.base import QUEUES, BrokerStats, GroupStats, QueueStats

__all__ = ["read_stats"]


def read_stats(client: redis.Redis, keys: Keys) -> BrokerStats:
    """The figures of every work queue, read from ``client`` (a few round trips)."""
    # Ages by Redis's clock, which stamped the entry ids: no skew with this machine's.
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    queues, groups = [], []
    for queue in QUEUES:
        stream = keys.queue(queue)
        lag, pending, oldest = _work_group_figures(client, stream, now_ms)
        alive = sum(1 for _ in client.scan_iter(match=Keys.heartbeat(stream, "*")))
        queues.append(QueueStats(queue, lag, alive, oldest))
        groups.append(GroupStats(queue, stream, WORK_GROUP, lag, pending))
    return BrokerStats(tuple(queues), tuple(groups))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _work_group_figures(client: redis.Redis, stream: str, now_ms: int) -> tuple[int, int, float]:
    """(lag, pending, seconds the oldest undelivered entry has waited) of the workers' group.

    An entry id starts with the milliseconds Redis stamped it with when it was added, and the
    entries after the group's last-delivered-id are exactly those no worker was given yet: the
    first of them is the oldest waiting job, read without taking it.
    """
    info: dict[str, Any] | None = None
    with contextlib.suppress(redis.ResponseError):  # no stream yet
        groups = client.xinfo_groups(stream)
        info = next((g for g in groups if _text(g["name"]) == WORK_GROUP), None)
    last, pending, lag = "0-0", 0, None
    if info is not None:
        last, pending, lag = _text(info["last-delivered-id"]), int(info["pending"]), info.get("lag")
    if lag is None:
        # No group yet, or a lag Redis cannot vouch for (it says so with nil): a work stream
        # holds exactly the unsettled entries, the pending ones and those still waiting.
        lag = max(0, int(client.xlen(stream)) - pending)
    reply: Any = client.xrange(stream, min=f"({last}", max="+", count=1)
    first = stream_entries(reply)
    if not first:
        return int(lag), pending, 0.0
    added_ms = int(first[0][0].split(b"-", 1)[0])
    return int(lag), pending, max(0.0, (now_ms - added_ms) / 1000)
