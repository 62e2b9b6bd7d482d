"""``make bench``, training: seed training jobs through the real system, beside a Celery task doing
the same work, in one run.

Each system runs as operators run it, in processes of its own: ``mlgate gateway`` with two
``mlgate worker`` processes on Redis and on RabbitMQ, and a Celery worker (prefork, two processes,
on a private Redis database) whose task splits, fits the same forest, scores the holdout and
pickles the model to disk. All three are started first and warmed; then each round submits
``--train-jobs`` jobs at once to each system in turn (each round starting with the next one), so
the machine's drift falls on all alike, and a system's throughput is the median of its rounds.

For mlgate's jobs the fit process reports the seconds it spent fitting and scoring
(``TrainResult.fit_seconds``). In a batch a job's time from submission to SUCCEEDED is mostly
queueing, so the overhead per job is measured twice: in the batch, as the slot time each job
took beyond its fit (two slots times the batch's duration, shared among its jobs, less the fit);
and one job at a time, as its time from submission (the client's call) to SUCCEEDED (the
client's receipt) less its fit.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
from celery import Celery

from bench.deployment import Deployment
from bench.inputs import DIABETES_FEATURES
from mlgate.jobs import DEFAULT_SEED, DEFAULT_TEST_SIZE
from mlgate.v1 import jobs_pb2, jobs_pb2_grpc

__all__ = ["Batch", "main_table", "measure"]

# The seed model, named explicitly although they are random_forest's defaults: the Celery task
# must fit the very same forest.
PARAMS = {"max_depth": 3, "n_estimators": 100}
SLOTS = 2  # two worker processes with one fit each; Celery's prefork pool of two
# Database 9 of the local Redis, which mlgate's tests and defaults (database 0) leave alone.
CELERY_URL = "redis://127.0.0.1:6379/9"
_REPO = Path(__file__).resolve().parent.parent


@dataclass
class Batch:
    """One batch of jobs submitted at once to one system."""

    seconds: float
    fit: list[float]
    # Per job, from the client's call to its receipt of SUCCEEDED (mlgate only).
    total: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.fit) / self.seconds

    @property
    def beyond_fit(self) -> float:
        """Slot seconds each job held beyond its own fit."""
        return SLOTS * self.seconds / len(self.fit) - statistics.mean(self.fit)


class System(Protocol):
    name: str

    def batch(self, count: int) -> Batch: ...


def _request() -> jobs_pb2.TrainRequest:
    request = jobs_pb2.TrainRequest(
        dataset_id="diabetes", features=DIABETES_FEATURES, target="target"
    )
    request.params.update(PARAMS)
    return request


async def _train(
    stub: jobs_pb2_grpc.JobServiceAsyncStub, request: jobs_pb2.TrainRequest
) -> tuple[float, float]:
    """One job: its time from the call to SUCCEEDED, and the fit's seconds the worker reported."""
    start = time.perf_counter()
    async for response in stub.Train(request, timeout=600):
        event = response.event
        if event.state == jobs_pb2.JOB_STATE_SUCCEEDED:
            return time.perf_counter() - start, event.train_result.fit_seconds
        if event.state in (jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED):
            raise RuntimeError(f"training job {event.job_id} ended: {event.error.message}")
    raise RuntimeError("a Train stream ended without the job's end")


class Mlgate:
    """``mlgate gateway`` and two ``mlgate worker`` processes on one broker."""

    def __init__(self, broker: str, tmp: Path) -> None:
        self.name = f"mlgate, gateway + 2 workers, {broker}"
        self.broker = broker
        self._deployment = Deployment(tmp, broker, f"mlgate-bench-{uuid.uuid4().hex[:12]}")
        self.address = ""

    def start(self) -> None:
        self.address = self._deployment.gateway()
        self._deployment.workers(SLOTS)

    def stop(self) -> None:
        self._deployment.stop()

    def batch(self, count: int) -> Batch:
        async def run() -> Batch:
            request = _request()
            async with grpc.aio.insecure_channel(self.address) as channel:
                stub = jobs_pb2_grpc.JobServiceStub(channel)
                start = time.perf_counter()
                done = await asyncio.gather(*(_train(stub, request) for _ in range(count)))
                seconds = time.perf_counter() - start
            return Batch(seconds, [fit for _, fit in done], [total for total, _ in done])

        return asyncio.run(run())

    def one_at_a_time(self, count: int) -> Batch:
        async def run() -> Batch:
            request = _request()
            async with grpc.aio.insecure_channel(self.address) as channel:
                stub = jobs_pb2_grpc.JobServiceStub(channel)
                start = time.perf_counter()
                done = [await _train(stub, request) for _ in range(count)]
                seconds = time.perf_counter() - start
            return Batch(seconds, [fit for _, fit in done], [total for total, _ in done])

        return asyncio.run(run())


class CeleryReference:
    """A Celery worker, prefork with two processes, on a private Redis database and queue."""

    name = "Celery task, prefork 2 processes, Redis"

    def __init__(self, tmp: Path, url: str) -> None:
        self._tmp = tmp
        self._url = url
        self._queue = f"mlgate-bench-{uuid.uuid4().hex[:12]}"
        self._app = Celery("mlgate-bench-client", broker=url, backend=url)
        self._app.conf.update(result_expires=600, broker_connection_retry_on_startup=True)
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tmp / "celery.log"

    def start(self) -> None:
        models = self._tmp / "celery-models"
        models.mkdir()
        env = {
            **os.environ,
            "MLGATE_BENCH_CELERY_URL": self._url,
            "MLGATE_BENCH_CELERY_MODELS": str(models),
            "PYTHONPATH": str(_REPO),
        }
        with self._log.open("wb") as out:
            self._process = subprocess.Popen(
                [
                    sys.executable, "-m", "celery", "-A", "bench.celery_reference", "worker",
                    "--pool=prefork", "--concurrency=2", "--loglevel=INFO",
                    f"--queues={self._queue}", f"--hostname={self._queue}@%h",
                ],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=_REPO,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while " ready." not in self._log.read_text(errors="replace"):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker did not start:\n{self._log.read_text()}")
            time.sleep(0.1)  # its log is the only signal a separate process gives

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        with self._app.connection_for_write() as connection:
            client = connection.default_channel.client
            # Kombu names its binding set one way or the other, by version.
            bindings = (f"_kombu.binding.{self._queue}", f"_kombu.binding_permanent.{self._queue}")
            client.delete(self._queue, *bindings)

    def batch(self, count: int) -> Batch:
        args = (DIABETES_FEATURES, PARAMS, DEFAULT_SEED, DEFAULT_TEST_SIZE)
        start = time.perf_counter()
        sent = [
            self._app.send_task("bench.celery_reference.train", args, queue=self._queue)
            for _ in range(count)
        ]
        results = [result.get(timeout=600) for result in sent]
        seconds = time.perf_counter() - start
        for result in sent:
            result.forget()
        return Batch(seconds, [r["fit_seconds"] for r in results])


@dataclass
class Report:
    jobs: int
    rounds: dict[str, list[Batch]]
    alone: dict[str, Batch]
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_before: float = 0.0
    cores: int = 0


@contextmanager
def _started(systems: list[Any]) -> Iterator[None]:
    with ExitStack() as stack:
        for system in systems:
            print(f"starting {system.name} ...", file=sys.stderr, flush=True)
            stack.callback(system.stop)
            system.start()
        yield


def measure(
    brokers: list[str], jobs: int, rounds: int, alone: int, *, celery_url: str | None = CELERY_URL
) -> Report:
    """Warm every system, then ``rounds`` batches of ``jobs`` each, systems taking turns; then
    ``alone`` jobs one at a time on each mlgate system. ``celery_url`` None: no Celery."""
    with tempfile.TemporaryDirectory() as tmp:
        ours = [Mlgate(broker, Path(tmp) / broker) for broker in brokers]
        systems: list[Any] = ([CeleryReference(Path(tmp), celery_url)] if celery_url else []) + ours
        for mlgate in ours:
            (Path(tmp) / mlgate.broker).mkdir()
        report = Report(jobs, {s.name: [] for s in systems}, {}, load_before=os.getloadavg()[0])
        with _started(systems):
            for system in systems:
                system.batch(2 * SLOTS)  # every worker process has fitted once
            for turn in range(rounds):
                # Each round starts with the next system: none always follows the same one.
                for system in systems[turn % len(systems) :] + systems[: turn % len(systems)]:
                    print(f"round {turn + 1}: {system.name} ...", file=sys.stderr, flush=True)
                    report.rounds[system.name].append(system.batch(jobs))
            report.load = os.getloadavg()
            for mlgate in ours:
                if alone:
                    print(f"one at a time: {mlgate.name} ...", file=sys.stderr, flush=True)
                    report.alone[mlgate.name] = mlgate.one_at_a_time(alone)
    report.cores = len(os.sched_getaffinity(0))
    return report


def _p50_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} ms"


def main_table(report: Report) -> str:
    """The training tables, in Markdown. A shared machine's other work only slows a round down,
    so each system's best round is shown beside its median."""
    celery = next((n for n in report.rounds if n.startswith("Celery")), None)

    def median_batch(name: str) -> Batch:
        return sorted(report.rounds[name], key=lambda b: b.rate)[len(report.rounds[name]) // 2]

    def best(name: str) -> float:
        return max(b.rate for b in report.rounds[name])

    reference = (median_batch(celery).rate, best(celery)) if celery else None
    # The fit alone, one job at a time, is what the cores could do with no work around it.
    alone = [f for batch in report.alone.values() for f in batch.fit]
    fits = alone or [f for batches in report.rounds.values() for b in batches for f in b.fit]
    limit = report.cores / statistics.median(fits)
    rounds = len(next(iter(report.rounds.values())))
    lines = [
        f"{report.jobs} seed training jobs at once (diabetes, RandomForestRegressor max_depth=3 "
        f"n_estimators=100), {rounds} rounds, the systems taking turns; {report.cores} cores, "
        f"load average {report.load_before:.1f} before, {report.load[0]:.1f} after; fit-bound "
        f"limit {report.cores} cores / {_p50_ms(fits)} fit+score = {limit:.1f} jobs/s",
        "",
        "| system | jobs/s, median (each round) | best round | vs Celery, median "
        "(target ≥ 1.2x) | vs Celery, best | fit+score p50 | slot time beyond the fit, per job |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in report.rounds:
        median = median_batch(name)
        each = ", ".join(f"{b.rate:.1f}" for b in report.rounds[name])
        ratios = (
            (f"{median.rate / reference[0]:.2f}x", f"{best(name) / reference[1]:.2f}x")
            if reference
            else ("-", "-")
        )
        lines.append(
            f"| {name} | {median.rate:.1f} ({each}) | {best(name):.1f} | {ratios[0]} "
            f"| {ratios[1]} | {_p50_ms(median.fit)} | {median.beyond_fit * 1000:.1f} ms |"
        )
    if report.alone:
        lines += [
            "",
            "| one job at a time | fit+score p50 | submission → SUCCEEDED p50 "
            "| overhead p50 (target ≤ 5 ms) |",
            "|---|---|---|---|",
        ]
        for name, batch in report.alone.items():
            overhead = [total - fit for total, fit in zip(batch.total, batch.fit, strict=True)]
            lines.append(
                f"| {name} ({len(batch.fit)} jobs) | {_p50_ms(batch.fit)} "
                f"| {_p50_ms(batch.total)} | {_p50_ms(overhead)} |"
            )
    return "\n".join(lines)
