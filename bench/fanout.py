"""``python -m bench.fanout``: does a crowd of watchers on one job slow everyone else down?

A gateway with its embedded worker (memory broker) runs in one child process, ``--watchers``
WatchJob streams on one slow training job in another, and this process times sequential one-row
predictions from the moment the watchers are attached until the job ends, so every wake-up of the
crowd (the job's last stages and its end) falls inside the measurement. The same is then done with
no watchers; the difference is what the crowd costs an unrelated call.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc

from bench.inputs import DIABETES_FEATURES
from bench.run import ROW, bench_settings, final_event, system
from brokers import EMBEDDED
from mlgate.v1 import jobs_pb2, jobs_pb2_grpc

# Fits for several seconds on a 2-core machine, emitting its last three events at the end.
SLOW_TRAIN = {"n_estimators": 1500, "max_depth": 12}


@dataclasses.dataclass
class Latencies:
    watchers: int
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def _watch(address: str, job_id: str, count: int, conn: Connection) -> None:
    """``count`` WatchJob streams on one job: reports once all are attached, then once all end."""

    async def crowd() -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            request = jobs_pb2.WatchJobRequest(job_id=job_id)
            streams: list[Any] = [aiter(stub.WatchJob(request)) for _ in range(count)]
            for stream in streams:
                await anext(stream)  # the first event: this stream is attached
            conn.send("attached")
            ends = 0
            for stream in streams:
                async for response in stream:
                    ends += response.event.state == jobs_pb2.JOB_STATE_SUCCEEDED
            conn.send(ends)

    asyncio.run(crowd())


def measure(
    stub: jobs_pb2_grpc.JobServiceStub, address: str, model_id: str, watchers: int
) -> Latencies:
    train = jobs_pb2.TrainRequest(
        dataset_id="diabetes", features=DIABETES_FEATURES, target="target"
    )
    train.params.update(SLOW_TRAIN)
    stream: Any = stub.Train(train)
    job_id = next(stream).event.job_id
    ended = threading.Event()

    def follow() -> None:
        final_event(stream)
        ended.set()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()

    crowd = None
    if watchers:
        ours, theirs = multiprocessing.Pipe()
        crowd = multiprocessing.get_context("spawn").Process(
            target=_watch, args=(address, job_id, watchers, theirs)
        )
        crowd.start()
        if not ours.poll(120) or ours.recv() != "attached":
            raise RuntimeError("the watchers did not attach")
    if ended.is_set():
        raise RuntimeError("the slow job ended before the watchers attached: make it slower")

    request = jobs_pb2.PredictRequest(model_id=model_id)
    request.rows.add().update(ROW)
    samples = []
    while not ended.is_set():
        start = time.perf_counter()
        final_event(stub.Predict(request, timeout=60))
        samples.append(time.perf_counter() - start)
    follower.join()
    if crowd is not None:
        if ours.recv() != watchers:
            raise RuntimeError("not every watcher saw the job end")
        crowd.join(60)
    samples.sort()
    return Latencies(
        watchers,
        len(samples),
        statistics.median(samples) * 1000,
        samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000,
        samples[-1] * 1000,
    )


def run(watchers: int) -> list[Latencies]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        system(bench_settings(EMBEDDED, Path(tmp))) as address,
        grpc.insecure_channel(address) as channel,
    ):
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        train = jobs_pb2.TrainRequest(
            dataset_id="diabetes", features=DIABETES_FEATURES, target="target"
        )
        model_id = final_event(stub.Train(train)).train_result.model_id
        return [measure(stub, address, model_id, n) for n in (0, watchers)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    parser.add_argument("--watchers", type=int, default=1000, help="WatchJob streams on one job")
    args = parser.parse_args(argv)
    print("benchmarking fan-out ...", file=sys.stderr, flush=True)
    results = run(args.watchers)
    print()
    print(
        "| watchers on a running job | predictions timed | predict p50 | predict p99 | predict max |"
    )
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.watchers} | {r.count} | {r.p50_ms:.1f} ms | {r.p99_ms:.1f} ms | {r.max_ms:.1f} ms |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
