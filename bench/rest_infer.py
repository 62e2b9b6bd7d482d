"""``make bench``, the Open Inference Protocol over REST: mlgate's REST ``infer`` beside its gRPC
``ModelInfer``, against MLServer's REST (its fast path), in one run.

mlgate runs as ``mlgate serve`` with ``MLGATE_HTTP_PORT`` (gateway and worker in one process,
the embedded broker); MLServer as ``mlserver start`` with ``mlserver-sklearn``, from a venv of
its own (``bench.mlserver_reference``). Both serve the README's forest; both run throughout, and
the measurements take turns, round after round, so the machine's drift falls on all alike. Each
measurement is one row (the README's patient) with 32 requests always in flight: REST over 32
keep-alive connections (``bench.http_load``, the same client for both servers), gRPC over one
grpc.aio channel with pre-serialized requests. The table shows the medians of the rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import struct
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench.deployment import Deployment, free_port
from bench.http_load import Connection, Load, load, post_json
from bench.inputs import DIABETES_FEATURES, DOC_ROW
from bench.mlserver_reference import MLServer
from brokers import EMBEDDED
from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.v1 import jobs_pb2, jobs_pb2_grpc

__all__ = ["Measured", "RestReport", "measure", "report"]

_HOST = "127.0.0.1"
_ROW = [DOC_ROW[name] for name in DIABETES_FEATURES]
# One tensor [1, 9]: what both servers take for the forest (MLServer reads its first input).
_INFER = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 9], "data": [_ROW]}]}
_MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
# Requests one at a time, for the latency of a request that waits for no other.
_ALONE = 500


@dataclass(frozen=True)
class Measured:
    """One system in one round: ``width`` in flight, and one at a time."""

    loaded: Load
    alone: Load


@dataclass
class RestReport:
    rest: list[Measured]
    grpc: list[Measured]
    mlserver: list[Measured]
    #: The prediction each answered for the README's patient (they must agree).
    answers: dict[str, float]
    width: int


async def _rest_lanes(port: int, path: str, width: int) -> tuple[list[Connection], bytes]:
    connections = [await Connection.open(_HOST, port) for _ in range(width)]
    return connections, post_json(_HOST, port, path, _INFER)


async def _rest(port: int, path: str, total: int, width: int) -> Measured:
    connections, request = await _rest_lanes(port, path, width)
    try:
        lanes = [functools.partial(c.call, request) for c in connections]
        await load(lanes, width * 20)  # warm: connections, caches, the batcher's lanes
        return Measured(await load(lanes, total), await load(lanes[:1], _ALONE))
    finally:
        for connection in connections:
            connection.close()


async def _grpc(address: str, model_id: str, total: int, width: int) -> Measured:
    request = pb.ModelInferRequest(model_name=model_id)
    request.inputs.add(name="input-0", datatype="FP64", shape=[1, 9])
    request.raw_input_contents.append(struct.pack(f"<{len(_ROW)}d", *_ROW))
    body = request.SerializeToString()
    async with grpc.aio.insecure_channel(address) as channel:
        call = channel.unary_unary(
            _MODEL_INFER, request_serializer=None, response_deserializer=None
        )
        lanes: list[Callable[[], Awaitable[object]]] = [lambda: call(body, timeout=60)] * width
        await load(lanes, width * 20)
        return Measured(await load(lanes, total), await load(lanes[:1], _ALONE))


async def _answer(port: int, path: str) -> float:
    connection = await Connection.open(_HOST, port)
    try:
        answer = await connection.json(post_json(_HOST, port, path, _INFER))
    finally:
        connection.close()
    return float(answer["outputs"][0]["data"][0])


@contextlib.contextmanager
def _mlgate(tmp: Path, http_port: int) -> Iterator[tuple[str, str]]:
    """``mlgate serve`` with REST on ``http_port``, the README's forest trained on it: its gRPC
    address and the model's id."""
    deployment = Deployment(tmp, EMBEDDED, "mlgate-bench", {"MLGATE_HTTP_PORT": str(http_port)})
    try:
        address = deployment.serve()
        with grpc.insecure_channel(address) as channel:
            train = jobs_pb2.TrainRequest(
                dataset_id="diabetes", features=DIABETES_FEATURES, target="target"
            )
            events = [r.event for r in jobs_pb2_grpc.JobServiceStub(channel).Train(train)]
        yield address, events[-1].train_result.model_id
    finally:
        deployment.stop()


def measure(total: int, width: int, rounds: int, *, mlserver: bool = True) -> RestReport:
    """``rounds`` turns of: mlgate's REST infer, its gRPC ModelInfer, MLServer's REST infer."""
    found = RestReport([], [], [], {}, width)
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        http_port = free_port()
        with contextlib.ExitStack() as running:
            address, model_id = running.enter_context(_mlgate(tmp, http_port))
            ours = f"/v2/models/{model_id}/infer"
            reference: MLServer | None = None
            if mlserver:
                reference = MLServer(tmp, free_port(), free_port(), free_port())
                running.callback(reference.stop)
            found.answers["mlgate"] = asyncio.run(_answer(http_port, ours))
            if reference is not None:
                theirs = "/v2/models/diabetes-rf/infer"
                found.answers["MLServer"] = asyncio.run(_answer(reference.http_port, theirs))
            for turn in range(rounds):
                print(f"REST, round {turn + 1} of {rounds} ...", file=sys.stderr, flush=True)
                found.rest.append(asyncio.run(_rest(http_port, ours, total, width)))
                found.grpc.append(asyncio.run(_grpc(address, model_id, total, width)))
                if reference is not None:
                    found.mlserver.append(
                        asyncio.run(_rest(reference.http_port, theirs, total, width))
                    )
    return found


def _row(name: str, runs: list[Measured]) -> str:
    loaded = Load.median([r.loaded for r in runs])
    alone = Load.median([r.alone for r in runs])
    each = ", ".join(f"{r.loaded.per_second:.0f}" for r in runs)
    return (
        f"| {name} | {loaded.per_second:.0f} req/s ({each}) | {alone.p50_ms:.2f} ms "
        f"| {alone.p99_ms:.2f} ms | {loaded.p50_ms:.2f} ms | {loaded.p99_ms:.2f} ms |"
    )


def report(found: RestReport) -> str:
    load_average = os.getloadavg()
    lines = [
        f"one row, {found.width} in flight, median of {len(found.rest)} rounds taking turns; "
        f"load average {load_average[0]:.1f}, {load_average[1]:.1f}",
        "answers for the README's patient: "
        + ", ".join(f"{k} {v!r}" for k, v in found.answers.items()),
        "",
        f"| system | throughput, {found.width} in flight (each round) | p50, one at a time "
        f"| p99, one at a time | p50, {found.width} in flight | p99, {found.width} in flight |",
        "|---|---|---|---|---|---|",
        _row("mlgate REST `infer` (target ≥ 1.5x MLServer's REST, p50 < 3 ms)", found.rest),
        _row("mlgate gRPC `ModelInfer`", found.grpc),
    ]
    if found.mlserver:
        lines.append(_row("MLServer REST `infer` (mlserver-sklearn)", found.mlserver))
        ours = Load.median([r.loaded for r in found.rest]).per_second
        ratio = ours / Load.median([r.loaded for r in found.mlserver]).per_second
        lines += ["", f"mlgate REST / MLServer REST: {ratio:.2f}x (target ≥ 1.5x)"]
    return "\n".join(lines)
