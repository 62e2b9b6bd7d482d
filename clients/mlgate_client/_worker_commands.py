"""``mlgate workers``: the worker processes a gateway hears, as Flower shows Celery's."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime

from mlgate_client._commands import out
from mlgate_client._format import table, to_json
from mlgate_client.client import MLGateClient
from mlgate_client.status import RunningJob, Worker

__all__ = ["cmd_workers", "workers_table"]


def cmd_workers(args: argparse.Namespace, client: MLGateClient) -> int:
    workers = client.list_workers()
    if args.json:
        out(to_json(workers))
    elif not workers:
        out("no worker is alive: none has sent a heartbeat to this gateway lately")
    else:
        out(workers_table(workers, datetime.now(UTC)))
    return 0


def workers_table(workers: Sequence[Worker], now: datetime) -> str:
    """One line per worker: where it runs, its broker, its jobs, when it was last heard and since
    when it runs."""
    rows = [
        [
            w.host,
            w.pid,
            w.broker,
            len(w.running),
            f"{w.heartbeat_age:.1f} s ago",
            _since(w.start_time, now),
            ", ".join(map(_job, w.running)) or "-",
        ]
        for w in workers
    ]
    return table(["HOST", "PID", "BROKER", "RUNNING", "HEARTBEAT", "SINCE", "JOBS"], rows)


def _job(job: RunningJob) -> str:
    doing = f"{job.stage or 'started'} {job.progress:.0%}"
    return f"{job.job_id} ({job.kind}, attempt {job.attempt}, {doing})"


def _since(start: datetime | None, now: datetime) -> str:
    """When the worker started, in local time, and how long ago."""
    if start is None:
        return "-"
    seconds = max(0, int((now - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    ago = f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s"
    return f"{start.astimezone():%Y-%m-%d %H:%M:%S} ({ago})"
