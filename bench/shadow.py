"""``python -m bench.shadow``: what a shadow version costs the primary's ModelInfer latency.

One system, run as operators run it (``mlgate serve`` on the embedded broker, or ``mlgate
gateway`` with ``--workers`` ``mlgate worker`` processes on RabbitMQ or Redis), serves two
aliases of one name in the same run: ``off`` points at version 1, ``on`` at version 1 with version
2 as its shadow (the same model trained twice, so the shadow costs what the primary does). A
client sends sequential one-row requests, alternating between the aliases in rounds so that
whatever else the machine does falls on both alike, and reports each alias's p50 and p99 and the
ratio of p50s (issue 21's target: at most 1.15). The shadow's own figures (mirrored, dropped)
come from GetShadowComparison at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc

from bench.deployment import Deployment, train_forest
from bench.inputs import DIABETES_FEATURES, DOC_ROW
from brokers import EMBEDDED
from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.v1 import models_pb2, models_pb2_grpc

NAME = "bench-shadow"
TARGET = 1.15


@dataclass
class ShadowResult:
    broker: str
    requests_per_alias: int
    off_p50_ms: float
    off_p99_ms: float
    on_p50_ms: float
    on_p99_ms: float
    ratio_p50: float
    mirrored: int
    dropped: int
    shadow_errors: int


def _request(alias: str) -> bytes:
    request = pb.ModelInferRequest(model_name=f"{NAME}@{alias}")
    tensor = request.inputs.add(name="input", datatype="FP64", shape=[1, len(DIABETES_FEATURES)])
    tensor.contents.fp64_contents.extend(DOC_ROW[f] for f in DIABETES_FEATURES)
    return request.SerializeToString()


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def measure(address: str, broker: str, requests: int, rounds: int) -> ShadowResult:
    with grpc.insecure_channel(address) as channel:
        train_forest(channel, NAME)
        train_forest(channel, NAME)
        registry = models_pb2_grpc.ModelServiceStub(channel)
        registry.SetModelAlias(models_pb2.SetModelAliasRequest(name=NAME, alias="off", version=1))
        registry.SetModelAlias(
            models_pb2.SetModelAliasRequest(name=NAME, alias="on", version=1, shadow_version=2)
        )
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=lambda body: body,
            response_deserializer=lambda body: body,
        )
        bodies = {alias: _request(alias) for alias in ("off", "on")}
        for body in bodies.values():  # warm: each model loaded in the workers once
            for _ in range(20):
                infer(body, timeout=60)
        samples: dict[str, list[float]] = {"off": [], "on": []}
        each = max(1, requests // rounds)
        for _ in range(rounds):
            for alias, body in bodies.items():
                for _ in range(each):
                    start = time.perf_counter()
                    infer(body, timeout=60)
                    samples[alias].append(time.perf_counter() - start)
        time.sleep(1.0)  # the last mirrored requests are answered after their primaries
        found = registry.GetShadowComparison(
            models_pb2.GetShadowComparisonRequest(name=NAME, alias="on")
        )
    off, on = sorted(samples["off"]), sorted(samples["on"])
    return ShadowResult(
        broker=broker,
        requests_per_alias=len(on),
        off_p50_ms=_quantile(off, 0.5),
        off_p99_ms=_quantile(off, 0.99),
        on_p50_ms=_quantile(on, 0.5),
        on_p99_ms=_quantile(on, 0.99),
        ratio_p50=statistics.median(on) / statistics.median(off),
        mirrored=found.mirrored,
        dropped=found.dropped,
        shadow_errors=found.shadow_errors,
    )


def run(broker: str, requests: int, rounds: int, workers: int) -> ShadowResult:
    with tempfile.TemporaryDirectory(prefix="mlgate-bench-shadow-") as tmp:
        deployment = Deployment(Path(tmp), broker, f"mlgate-bench-shadow-{uuid.uuid4().hex[:8]}")
        try:
            if broker == EMBEDDED:
                address = deployment.serve()
            else:
                address = deployment.gateway()
                deployment.workers(workers)
            return measure(address, broker, requests, rounds)
        finally:
            deployment.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shadow", description=__doc__)
    parser.add_argument(
        "--brokers",
        default=EMBEDDED,
        help=f"comma-separated broker kinds (default: {EMBEDDED}, the embedded one)",
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests per alias")
    parser.add_argument("--rounds", type=int, default=10, help="alternations between aliases")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (brokers)")
    parser.add_argument("--json", action="store_true", help="one JSON object per broker")
    args = parser.parse_args(argv)
    worst = 0.0
    for broker in args.brokers.split(","):
        result = run(broker, args.requests, args.rounds, args.workers)
        worst = max(worst, result.ratio_p50)
        if args.json:
            print(json.dumps(asdict(result)), flush=True)
        else:
            print(
                f"{broker}: {result.requests_per_alias} requests per alias; "
                f"p50 {result.off_p50_ms:.2f} ms without a shadow, {result.on_p50_ms:.2f} ms "
                f"with one ({result.ratio_p50:.2f}x; target <= {TARGET}x); p99 "
                f"{result.off_p99_ms:.2f} / {result.on_p99_ms:.2f} ms; shadow mirrored "
                f"{result.mirrored}, dropped {result.dropped}, errors {result.shadow_errors}",
                flush=True,
            )
    if worst > TARGET:
        print(f"over the target: {worst:.2f}x > {TARGET}x", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
