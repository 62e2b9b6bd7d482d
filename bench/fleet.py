"""``python -m bench.fleet`` (part of ``make bench``): what a job store and a second gateway cost.

Five systems run as operators run them, in processes of their own, each on the Redis broker with
``--workers`` ``mlgate worker`` processes and a namespace of its own: one ``mlgate gateway``
recording in SQLite (the single-gateway deployment the others are held against), and one and two
gateways sharing a PostgreSQL database (made for the run, dropped after) and a Redis job store.
All are started and warmed first; then each round drives ``--jobs`` one-row job-style ``Predict``
calls, 32 in flight, through each system in turn (each round starting with the next one), so the
machine's drift falls on all alike, and a system's figures are the medians of its rounds.

The client is the job bench's (``bench.model_infer``): one grpc.aio channel, here balancing over
the system's gateways with gRPC's ``round_robin``, as the mlgate client does for a list of
addresses. Around each measured window the CPU time (user and system, from ``/proc/<pid>/stat``)
of every gateway process, every worker process and the client is read; each is divided by the
jobs the window completed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
import psycopg
import redis

from bench.deployment import Deployment
from bench.inputs import DIABETES_FEATURES
from bench.model_infer import in_flight, predict_job
from mlgate.v1 import jobs_pb2, jobs_pb2_grpc

__all__ = ["SYSTEMS", "Report", "Window", "main", "measure", "table"]

#: (job store, gateway processes) of each system; the first is the one the others are held to.
SYSTEMS = [("sqlite", 1), ("postgresql", 1), ("postgresql", 2), ("redis", 1), ("redis", 2)]
BROKER = "redis"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
WIDTH = 32
#: The most PostgreSQL may cost in gateway CPU per job, against SQLite (issue 18).
TARGET = 1.20
_TICK = os.sysconf("SC_CLK_TCK")
_ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process (every thread of it) has used, in seconds."""
    # The name field may hold spaces and parentheses: count fields from the last ')'.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _cpu(pids: list[int]) -> float:
    return sum(cpu_seconds(pid) for pid in pids)


@dataclass
class Window:
    """One measured run of jobs through one system."""

    jobs: int
    seconds: float
    gateway_cpu: float
    worker_cpu: float
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds

    @property
    def gateway_ms(self) -> float:
        """Gateway CPU per job, every gateway process of the system summed."""
        return self.gateway_cpu / self.jobs * 1000

    @property
    def worker_ms(self) -> float:
        return self.worker_cpu / self.jobs * 1000

    @property
    def client_ms(self) -> float:
        return self.client_cpu / self.jobs * 1000


class Fleet:
    """``gateways`` gateway processes and the workers on the broker, recording in ``store``."""

    def __init__(
        self, store: str, gateways: int, workers: int, tmp: Path, urls: dict[str, str]
    ) -> None:
        self.store = store
        self.gateways = gateways
        self.name = f"{store}, {gateways} gateway{'s' if gateways > 1 else ''}"
        self._workers = workers
        self._urls = urls
        #: The system's broker and Redis namespace; its PostgreSQL database's name, too.
        self.namespace = f"mlgate-bench-fleet-{uuid.uuid4().hex[:12]}"
        self.database = self.namespace.replace("-", "_")
        env = {"MLGATE_REDIS_URL": urls["redis"], "MLGATE_STORE_URL": self._store_url(tmp)}
        self._tmp = tmp
        self._deployment = Deployment(tmp, BROKER, self.namespace, env)
        self._addresses: list[str] = []
        self._model_id = ""

    def _store_url(self, tmp: Path) -> str:
        if self.store == "postgresql":
            return urlunsplit(urlsplit(self._urls["postgresql"])._replace(path=self.database))
        if self.store == "redis":
            return self._urls["redis"]  # keys under the system's namespace
        return f"sqlite:///{tmp / 'data' / 'jobs.db'}"

    def start(self) -> None:
        """Start every process and train the model the jobs predict with."""
        self._tmp.mkdir()
        if self.store == "postgresql":
            with psycopg.connect(self._urls["postgresql"], autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.database}"')
        self._addresses = [self._deployment.gateway() for _ in range(self.gateways)]
        self._deployment.workers(self._workers)
        train = jobs_pb2.TrainRequest(
            dataset_id="diabetes", features=DIABETES_FEATURES, target="target"
        )
        with grpc.insecure_channel(self._addresses[0]) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            events = [response.event for response in stub.Train(train, timeout=300)]
        if events[-1].state != jobs_pb2.JOB_STATE_SUCCEEDED:
            raise RuntimeError(f"{self.name}: training failed: {events[-1].error.message}")
        self._model_id = events[-1].train_result.model_id

    def stop(self) -> None:
        """Stop the processes; remove the database and the keys the system made."""
        self._deployment.stop()
        client = redis.Redis.from_url(self._urls["redis"])
        try:
            keys = list(client.scan_iter(match=f"{self.namespace}:*", count=1000))
            if keys:
                client.unlink(*keys)
        finally:
            client.close()
        if self.store == "postgresql":
            with psycopg.connect(self._urls["postgresql"], autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def run(self, jobs: int) -> Window:
        """``jobs`` jobs, ``WIDTH`` in flight, after a warm-up that reaches every gateway."""

        async def drive() -> Window:
            target = "ipv4:" + ",".join(self._addresses)
            options = [("grpc.service_config", _ROUND_ROBIN)]
            async with grpc.aio.insecure_channel(target, options=options) as channel:
                job = predict_job(channel, self._model_id)
                await in_flight(job, b"", WIDTH * self.gateways, WIDTH)
                gateways = self._deployment.pids("gateway")
                workers = self._deployment.pids("worker")
                before = _cpu(gateways), _cpu(workers), time.process_time()
                start = time.perf_counter()
                await in_flight(job, b"", jobs, WIDTH)
                seconds = time.perf_counter() - start
                after = _cpu(gateways), _cpu(workers), time.process_time()
            used = [end - begin for begin, end in zip(before, after, strict=True)]
            return Window(jobs, seconds, *used)

        return asyncio.run(drive())


@dataclass
class Report:
    jobs: int
    workers: int
    rounds: dict[str, list[Window]] = field(default_factory=dict)
    #: Each system's namespace and database (all removed once the bench is done).
    namespaces: list[str] = field(default_factory=list)
    load_before: float = 0.0
    load_after: float = 0.0
    cores: int = 0


@contextmanager
def _started(fleets: list[Fleet]) -> Iterator[None]:
    with ExitStack() as stack:
        for fleet in fleets:
            print(f"starting {fleet.name} ...", file=sys.stderr, flush=True)
            stack.callback(fleet.stop)
            fleet.start()
        yield


def measure(
    jobs: int,
    rounds: int,
    workers: int,
    urls: dict[str, str],
) -> Report:
    """Start every system, then ``rounds`` runs of ``jobs`` jobs through each, taking turns."""
    report = Report(jobs, workers, load_before=os.getloadavg()[0])
    with tempfile.TemporaryDirectory() as tmp:
        fleets = [
            Fleet(store, gateways, workers, Path(tmp) / f"{store}-{gateways}", urls)
            for store, gateways in SYSTEMS
        ]
        report.rounds = {fleet.name: [] for fleet in fleets}
        report.namespaces = [fleet.namespace for fleet in fleets]
        with _started(fleets):
            for turn in range(rounds):
                # Each round starts with the next system: none always follows the same one.
                for fleet in fleets[turn % len(fleets) :] + fleets[: turn % len(fleets)]:
                    print(f"round {turn + 1}: {fleet.name} ...", file=sys.stderr, flush=True)
                    report.rounds[fleet.name].append(fleet.run(jobs))
            report.load_after = os.getloadavg()[0]
    report.cores = len(os.sched_getaffinity(0))
    return report


def _median(values: list[float], digits: int, unit: str = "") -> str:
    """The median, then each value in parentheses."""
    each = ", ".join(f"{v:.{digits}f}" for v in values)
    return f"{statistics.median(values):.{digits}f}{unit} ({each})"


def table(report: Report) -> str:
    """The fleet table, in Markdown: medians of the rounds, each round's value beside them."""
    baseline = statistics.median(w.gateway_ms for w in next(iter(report.rounds.values())))
    rounds = len(next(iter(report.rounds.values())))
    lines = [
        f"job-style Predict, 1 row, {WIDTH} in flight, {report.jobs} jobs a round, {rounds} "
        f"rounds, the systems taking turns; {BROKER} broker, {report.workers} worker processes "
        f"per system; {report.cores} cores, load average {report.load_before:.1f} before, "
        f"{report.load_after:.1f} after",
        "",
        "| job store, gateways | jobs/s, median (each round) | gateway CPU per job, median "
        f"(each round) | vs SQLite (target for PostgreSQL ≤ {TARGET:.2f}x) | workers' CPU per job "
        "| client CPU per job |",
        "|---|---|---|---|---|---|",
    ]
    for name, windows in report.rounds.items():
        gateway = [w.gateway_ms for w in windows]
        lines.append(
            f"| {name} | {_median([w.rate for w in windows], 0)} | {_median(gateway, 2, ' ms')} "
            f"| {statistics.median(gateway) / baseline:.2f}x "
            f"| {statistics.median(w.worker_ms for w in windows):.2f} ms "
            f"| {statistics.median(w.client_ms for w in windows):.2f} ms |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("--jobs", type=int, default=3000, help="jobs a round, per system")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, the systems taking turns")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per system")
    parser.add_argument(
        "--postgres-url",
        default=POSTGRES_URL,
        help="a PostgreSQL database to connect to while creating (and dropping) the bench's own",
    )
    parser.add_argument("--redis-url", default=REDIS_URL, help="the broker and the Redis store")
    args = parser.parse_args(argv)
    urls = {"postgresql": args.postgres_url, "redis": args.redis_url}
    print(table(measure(args.jobs, args.rounds, args.workers, urls)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
