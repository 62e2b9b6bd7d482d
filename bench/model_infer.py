"""``make bench``, online inference: ModelInfer through the real system, against a ceiling.

For each broker the system runs as operators run it, in processes of its own: ``mlgate serve``
(gateway and worker in one process) on the embedded broker, and ``mlgate gateway`` with two
``mlgate worker`` processes on RabbitMQ and Redis. In the same run, a grpc.aio server whose
handler does nothing is driven by the same client, so the ratio to that ceiling holds on a busy
machine; it also answers job-style ``Predict`` with two events at once, the ceiling for jobs. The client is one grpc.aio channel sending pre-serialized requests: what it measures is
the server side.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from bench.deployment import Deployment
from bench.inputs import DIABETES_FEATURES, DOC_ROW
from brokers import EMBEDDED
from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.v1 import jobs_pb2, jobs_pb2_grpc

__all__ = ["InferenceResult", "ceiling", "in_flight", "measure", "predict_job"]

METHOD = "/inference.GRPCInferenceService/ModelInfer"
_OPTIONS = [
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]


@dataclass
class InferenceResult:
    system: str
    in_flight_rps: float
    p50_ms: float
    p99_ms: float
    big_p50_ms: float
    jobs_per_s: float
    big_job_p50_ms: float = 0.0


def _request(model_id: str, X: np.ndarray) -> bytes:
    request = pb.ModelInferRequest(model_name=model_id)
    request.inputs.add(name="input", datatype="FP64", shape=list(X.shape))
    request.raw_input_contents.append(X.astype("<f8").tobytes())
    return request.SerializeToString()


async def _sequential(
    call: Callable[[bytes], Awaitable[Any]], body: bytes, count: int
) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        await call(body)
        samples.append(time.perf_counter() - start)
    return sorted(samples)


async def in_flight(
    call: Callable[[bytes], Awaitable[Any]], body: bytes, total: int, width: int
) -> float:
    """Requests per second with ``width`` always in flight."""
    left = total

    async def lane() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call(body)

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(width)))
    return total / (time.perf_counter() - start)


def _unary(channel: grpc.aio.Channel) -> Callable[[bytes], Awaitable[Any]]:
    # No serializers: the bytes go as they are, so the client's own cost is the same everywhere.
    call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
    return lambda body: call(body, timeout=60)


def predict_job(channel: grpc.aio.Channel, model_id: str) -> Callable[[bytes], Awaitable[None]]:
    """A call that runs one one-row job-style Predict to its end (its argument is unused)."""
    row = jobs_pb2.PredictRequest(model_id=model_id)
    row.rows.add().update(DOC_ROW)
    stub = jobs_pb2_grpc.JobServiceStub(channel)

    async def job(_body: bytes) -> None:
        async for response in stub.Predict(row, timeout=60):
            if response.event.state == jobs_pb2.JOB_STATE_FAILED:
                raise RuntimeError(response.event.error.message)

    return job


async def _jobs_in_flight(address: str, model_id: str, total: int, width: int) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        job = predict_job(channel, model_id)
        await in_flight(job, b"", width, width)  # warm
        return await in_flight(job, b"", total, width)


async def _big_job(address: str, model_id: str, X: np.ndarray, count: int) -> list[float]:
    """Job-style Predict of all of ``X``'s rows as columns, one job at a time: seconds each."""
    request = jobs_pb2.PredictRequest(model_id=model_id)
    for name, column in zip(DIABETES_FEATURES, X.T, strict=True):
        request.columns.add(name=name).doubles.values.extend(column.tolist())
    body = request.SerializeToString()
    async with grpc.aio.insecure_channel(address, options=_OPTIONS) as channel:
        call = channel.unary_stream(
            "/mlgate.v1.JobService/Predict",
            request_serializer=None,
            response_deserializer=jobs_pb2.PredictResponse.FromString,
        )

        async def job(data: bytes) -> None:
            async for response in call(data, timeout=60):
                if response.event.state == jobs_pb2.JOB_STATE_FAILED:
                    raise RuntimeError(response.event.error.message)

        await job(body)  # warm
        return await _sequential(job, body, count)


async def _drive(
    address: str, model_id: str, sequential: int, total: int, width: int
) -> InferenceResult:
    one = _request(model_id, np.array([[DOC_ROW[f] for f in DIABETES_FEATURES]]))
    X = np.random.default_rng(0).normal(0.0, 0.05, (10_000, len(DIABETES_FEATURES)))
    big = _request(model_id, X)
    async with grpc.aio.insecure_channel(address, options=_OPTIONS) as channel:
        call = _unary(channel)
        await _sequential(call, one, 50)  # warm the model cache and the connections
        samples = await _sequential(call, one, sequential)
        rps = await in_flight(call, one, total, width)
        big_samples = await _sequential(call, big, 20)
    jobs = await _jobs_in_flight(address, model_id, max(width * 10, total // 4), width)
    big_jobs = await _big_job(address, model_id, X, 10)
    return InferenceResult(
        "",
        rps,
        statistics.median(samples) * 1000,
        samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000,
        statistics.median(big_samples) * 1000,
        jobs,
        statistics.median(big_jobs) * 1000,
    )


def measure(broker: str, sequential: int, total: int, width: int) -> InferenceResult:
    """The system on ``broker`` with two worker processes (embedded: one process)."""
    with tempfile.TemporaryDirectory() as tmp:
        deployment = Deployment(Path(tmp), broker, "mlgate-bench")
        try:
            if broker == EMBEDDED:
                address = deployment.serve()
            else:
                address = deployment.gateway()
                deployment.workers(2)
            with grpc.insecure_channel(address) as channel:
                stub = jobs_pb2_grpc.JobServiceStub(channel)
                train = jobs_pb2.TrainRequest(
                    dataset_id="diabetes", features=DIABETES_FEATURES, target="target"
                )
                model_id = [r.event for r in stub.Train(train, timeout=300)][
                    -1
                ].train_result.model_id
            result = asyncio.run(_drive(address, model_id, sequential, total, width))
        finally:
            deployment.stop()
    result.system = "embedded" if broker == EMBEDDED else broker
    return result


def _nothing(conn: Connection) -> None:
    """A grpc.aio server whose ModelInfer handler returns an empty response at once."""

    async def serve() -> None:
        server = grpc.aio.server(options=_OPTIONS)

        async def nothing(request: bytes, context: Any) -> bytes:
            return b""

        # A job-style Predict that does nothing either: the two events of a prediction whose
        # model is cached, QUEUED and SUCCEEDED, pre-serialized.
        queued = jobs_pb2.PredictResponse()
        queued.event.state = jobs_pb2.JOB_STATE_QUEUED
        succeeded = jobs_pb2.PredictResponse()
        succeeded.event.state = jobs_pb2.JOB_STATE_SUCCEEDED
        succeeded.event.predict_result.predictions.add(number_value=208.6445780005619)
        events = [queued.SerializeToString(), succeeded.SerializeToString()]

        async def no_job(request: bytes, context: Any) -> AsyncIterator[bytes]:
            for event in events:
                yield event

        handler = grpc.unary_unary_rpc_method_handler(nothing)
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "inference.GRPCInferenceService", {"ModelInfer": handler}
                ),
                grpc.method_handlers_generic_handler(
                    "mlgate.v1.JobService",
                    {"Predict": grpc.unary_stream_rpc_method_handler(no_job)},
                ),
            )
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        conn.send(port)
        await asyncio.to_thread(conn.recv)
        await server.stop(1)

    asyncio.run(serve())


def ceiling(total: int, width: int) -> tuple[float, float]:
    """Requests per second the same clients get from a server that does nothing: ModelInfer
    calls, and job-style Predict streams of two events."""
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.get_context("spawn").Process(target=_nothing, args=(theirs,))
    child.start()
    try:
        if not ours.poll(60):
            raise RuntimeError("the do-nothing server did not start")
        address = f"127.0.0.1:{ours.recv()}"
        one = _request("nothing", np.zeros((1, len(DIABETES_FEATURES))))

        async def drive() -> float:
            async with grpc.aio.insecure_channel(address) as channel:
                call = _unary(channel)
                await in_flight(call, one, width * 10, width)
                return await in_flight(call, one, total, width)

        unary = asyncio.run(drive())
        streams = asyncio.run(
            _jobs_in_flight(address, "nothing", max(width * 10, total // 4), width)
        )
        return unary, streams
    finally:
        ours.send("stop")
        child.join(30)


def report(results: list[InferenceResult], ceilings: list[tuple[float, float]]) -> str:
    top = statistics.median(c[0] for c in ceilings)
    streams = statistics.median(c[1] for c in ceilings)
    load = os.getloadavg()
    targets = {"embedded": 1.0, "rabbitmq": 2.0, "redis": 2.0}
    lines = [
        f"do-nothing ceiling, 32 in flight: {top:.0f} req/s (median of {len(ceilings)} runs: "
        f"{', '.join(f'{c[0]:.0f}' for c in ceilings)}); load average {load[0]:.1f}, "
        f"{load[1]:.1f}",
        f"do-nothing job-style Predict (two events a stream), 32 in flight: {streams:.0f}/s "
        f"(runs: {', '.join(f'{c[1]:.0f}' for c in ceilings)})",
        "",
        "| system | ModelInfer, 1 row, 32 in flight | share of ceiling (target ≥ 60%) "
        "| 1 row p50 (target) | 1 row p99 | 10,000 rows p50 (target ≤ 25 ms) "
        "| Predict jobs/s, 32 in flight (target ≥ 1,000 on Redis) "
        "| Predict, 10,000 rows as columns, p50 (target ≤ 100 ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.system} | {r.in_flight_rps:.0f} req/s | {r.in_flight_rps / top:.0%} "
            f"| {r.p50_ms:.2f} ms (≤ {targets.get(r.system, 2.0):g} ms) | {r.p99_ms:.2f} ms "
            f"| {r.big_p50_ms:.1f} ms | {r.jobs_per_s:.0f} ({r.jobs_per_s / streams:.0%} of "
            f"nothing) | {r.big_job_p50_ms:.1f} ms |"
        )
    return "\n".join(lines)
