"""``make bench``: prediction latency and throughput, and training rate, through the real gateway.

Each broker gets a fresh gateway with one in-process worker and a fresh data directory. The
system runs in a child process; the client is a generated gRPC stub over one channel, as any
user's would be.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2

from bench import model_infer, rest_infer, train_throughput
from bench.inputs import DIABETES_FEATURES, DOC_ROW
from brokers import BROKERS, EMBEDDED
from mlgate.v1 import jobs_pb2, jobs_pb2_grpc
from server.app import Gateway
from server.settings import GatewaySettings
from workers.settings import WorkerSettings

FEATURES = DIABETES_FEATURES
ROW = DOC_ROW


@dataclasses.dataclass
class Result:
    broker: str
    p50_ms: float
    p99_ms: float
    predict_rps: float
    train_per_s: float


def final_event(stream: Any) -> jobs_pb2.JobEvent:
    """The last event of a job's stream, which must be SUCCEEDED."""
    last: jobs_pb2.JobEvent | None = None
    for response in stream:
        last = response.event
    assert last is not None and last.state == jobs_pb2.JOB_STATE_SUCCEEDED, last
    return last


def bench_settings(broker: str, data_dir: Path) -> GatewaySettings:
    """A gateway on ``broker`` and a fresh data directory, on a free loopback port."""
    settings = GatewaySettings.from_env({"MLGATE_BROKER": broker}, data_dir=data_dir)
    # Reused: every run leaves its queues empty.
    bench_broker = settings.broker.with_(namespace="mlgate-bench")
    return settings.with_(host="127.0.0.1", port=0, broker=bench_broker)


def _timed(fn: Callable[[], object], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def _serve(settings: GatewaySettings, conn: Connection) -> None:
    """The system under test, in its own process so the client does not share its GIL."""
    workers = WorkerSettings.from_env({}, data_dir=settings.data_dir).with_(broker=settings.broker)

    async def serve() -> None:
        gateway = Gateway(settings, workers=workers)
        await gateway.start()
        conn.send(f"127.0.0.1:{gateway.port}")
        await asyncio.to_thread(conn.recv)
        await gateway.stop(2.0)

    asyncio.run(serve())


@contextlib.contextmanager
def system(settings: GatewaySettings) -> Iterator[str]:
    """A fresh gateway and worker in a child process; yields its address."""
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(target=_serve, args=(settings, theirs))
    child.start()
    try:
        if not ours.poll(120):
            raise RuntimeError(f"the {settings.broker.kind} gateway did not start")
        yield ours.recv()
    finally:
        ours.send("stop")
        child.join(60)


def run(
    broker: str,
    sequential: int,
    concurrent: int,
    clients: int,
    trains: int,
    *,
    metrics: bool = False,
) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(broker, Path(tmp))
        if metrics:
            settings = settings.with_(metrics_port=0)  # /metrics on, as an operator runs it
        with system(settings) as address, grpc.insecure_channel(address) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            train = jobs_pb2.TrainRequest(dataset_id="diabetes", features=FEATURES, target="target")
            model_id = final_event(stub.Train(train)).train_result.model_id
            row = struct_pb2.Struct()
            row.update(ROW)
            request = jobs_pb2.PredictRequest(model_id=model_id, rows=[row])

            def predict() -> object:
                return final_event(stub.Predict(request, timeout=30))

            _timed(predict, 20)  # warm the model cache and the connections
            samples = sorted(_timed(predict, sequential))
            p50 = statistics.median(samples)
            p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]

            per_client = concurrent // clients
            start = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                for future in [pool.submit(_timed, predict, per_client) for _ in range(clients)]:
                    future.result()
            rps = per_client * clients / (time.perf_counter() - start)

            start = time.perf_counter()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda _: final_event(stub.Train(train)), range(trains)))
            train_rate = trains / (time.perf_counter() - start)
    return Result(broker, p50 * 1000, p99 * 1000, rps, train_rate)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--brokers", default=",".join(BROKERS), help="comma-separated")
    parser.add_argument("--sequential", type=int, default=500, help="sequential predictions")
    parser.add_argument("--concurrent", type=int, default=3200, help="predictions under load")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients")
    parser.add_argument("--trains", type=int, default=20, help="training jobs")
    parser.add_argument(
        "--only",
        choices=["inference", "rest", "training", "jobs"],
        help="run one part (default: all)",
    )
    parser.add_argument(
        "--rest-total", type=int, default=10_000, help="rest: requests per measurement"
    )
    parser.add_argument(
        "--rest-rounds", type=int, default=3, help="rest: rounds, the systems taking turns"
    )
    parser.add_argument(
        "--no-mlserver", action="store_true", help="rest: without MLServer's reference"
    )
    parser.add_argument(
        "--train-jobs", type=int, default=40, help="training: jobs submitted at once per round"
    )
    parser.add_argument(
        "--train-rounds", type=int, default=5, help="training: rounds, the systems taking turns"
    )
    parser.add_argument(
        "--train-alone", type=int, default=20, help="training: jobs one at a time per broker"
    )
    parser.add_argument(
        "--celery-url",
        default=train_throughput.CELERY_URL,
        help="training: the Redis database the Celery reference uses ('' for no reference)",
    )
    parser.add_argument(
        "--ceiling-rounds", type=int, default=3, help="runs of the do-nothing server"
    )
    parser.add_argument(
        "--overhead-rounds",
        type=int,
        default=3,
        help="embedded runs with metrics off and on, alternated (0 to skip)",
    )
    args = parser.parse_args(argv)
    if args.only in (None, "inference"):
        print(inference_table(args))
        print()
    if args.only in (None, "rest"):
        found = rest_infer.measure(
            args.rest_total, args.clients, args.rest_rounds, mlserver=not args.no_mlserver
        )
        print(rest_infer.report(found))
        print()
    if args.only in (None, "training"):
        brokers = [b for b in args.brokers.split(",") if b != EMBEDDED]
        report = train_throughput.measure(
            brokers,
            args.train_jobs,
            args.train_rounds,
            args.train_alone,
            celery_url=args.celery_url or None,
        )
        print(train_throughput.main_table(report))
        print()
    if args.only not in (None, "jobs"):
        return 0
    results = []
    for broker in args.brokers.split(","):
        print(f"benchmarking {broker} ...", file=sys.stderr, flush=True)
        results.append(run(broker, args.sequential, args.concurrent, args.clients, args.trains))
    print()
    print("| broker | predict p50 | predict p99 | predict throughput (32 clients) | train jobs/s |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.broker} | {r.p50_ms:.1f} ms | {r.p99_ms:.1f} ms | "
            f"{r.predict_rps:.0f} req/s | {r.train_per_s:.2f} |"
        )
    if args.overhead_rounds > 0:
        print()
        print(metrics_overhead(args.overhead_rounds, args.concurrent, args.clients))
    return 0


def inference_table(args: argparse.Namespace) -> str:
    """Online inference per broker, with the do-nothing ceiling measured between them."""
    results, ceilings = [], []
    for broker in args.brokers.split(","):
        print(f"ceiling, then inference on {broker} ...", file=sys.stderr, flush=True)
        ceilings.append(model_infer.ceiling(args.concurrent * 2, args.clients))
        results.append(
            model_infer.measure(broker, args.sequential, args.concurrent * 2, args.clients)
        )
    for _ in range(max(0, args.ceiling_rounds - len(ceilings))):
        ceilings.append(model_infer.ceiling(args.concurrent * 2, args.clients))
    return model_infer.report(results, ceilings)


def metrics_overhead(rounds: int, concurrent: int, clients: int) -> str:
    """The embedded system's prediction throughput with /metrics on against off (tracing off),
    alternating the two so the machine's drift falls on both alike."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for metrics in (False, True):
            print(f"overhead: metrics {'on' if metrics else 'off'} ...", file=sys.stderr)
            result = run(EMBEDDED, 50, concurrent, clients, 1, metrics=metrics)
            rates[metrics].append(result.predict_rps)
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    return (
        "| embedded, 32 clients | metrics off | metrics on | on / off |\n"
        "|---|---|---|---|\n"
        f"| predict throughput (median of {rounds}) | {off:.0f} req/s | {on:.0f} req/s "
        f"| {on / off:.3f} |"
    )
