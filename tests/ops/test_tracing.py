"""One trace per job across the broker: the worker's spans are children of the gateway's, on
RabbitMQ and on Redis (gateway and worker with their own broker connections, one exporter)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from brokers import open_broker
from brokers.settings import DEFAULT_URLS
from mlgate import tracing
from mlgate_client import MLGateClient
from storage import open_object_store
from storage.datasets import DatasetCatalog
from storage.models import ModelRepository
from tests.support.background import BackgroundGateway
from tests.support.samples import DIABETES_FEATURES, DOC_ROW
from tests.support.system import gateway_settings, running_gateway
from tests.support.waiting import wait_for
from workers.worker import Worker

EXPORTER = InMemorySpanExporter()


@pytest.fixture
def traced() -> Iterator[InMemorySpanExporter]:
    assert tracing.configure_tracing("mlgate-test", exporter=EXPORTER)
    EXPORTER.clear()
    yield EXPORTER
    EXPORTER.clear()
    tracing.reset_for_tests()  # the rest of the session runs with tracing off, as by default


@pytest.fixture(params=["rabbitmq", "redis"])
def distributed(request: pytest.FixtureRequest, tmp_path: Path, traced) -> Iterator[str]:
    settings = gateway_settings(
        tmp_path / "data",
        broker=request.param,
        broker_url=DEFAULT_URLS[request.param],
        namespace=f"trace-{uuid.uuid4().hex[:10]}",
    )
    gateway = BackgroundGateway(settings, embedded_workers=False).start()
    broker = open_broker(settings.broker)
    broker.start()
    objects = open_object_store(settings.storage_url)
    worker = Worker(broker, DatasetCatalog(objects), ModelRepository(objects), settings.worker)
    worker.start()
    try:
        yield gateway.address
    finally:
        worker.stop(10)
        broker.close()
        gateway.stop()


def test_a_job_is_one_trace_from_the_gateway_through_the_worker(distributed, traced) -> None:
    with MLGateClient(distributed, timeout=30) as client:
        model = client.train("diabetes", target="target", features=DIABETES_FEATURES)
        client.predict(model.model_id, [DOC_ROW])

    def ended() -> set[str]:
        return {s.name for s in traced.get_finished_spans()}

    # A worker's job span ends just after it publishes the outcome the client saw, and the
    # gateway's RPC span just after the stream's last message.
    names = {
        "train job",
        "predict job",
        "/mlgate.v1.JobService/Train",
        "/mlgate.v1.JobService/Predict",
    }
    wait_for(lambda: names <= ended(), 10, f"spans {names} to end")
    spans = traced.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}

    def ancestors(span: Any) -> Iterator[Any]:
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            yield span

    for kind, stages in (
        ("train", {"queue wait", "load data", "fit and score", "save model"}),
        ("predict", {"queue wait", "load model", "predict"}),
    ):
        (job,) = [s for s in spans if s.name == f"{kind} job"]
        rpc = [s for s in ancestors(job)]
        assert rpc, f"the {kind} job span has no parent from the gateway"
        root = rpc[-1]
        method = "Train" if kind == "train" else "Predict"
        assert root.name.endswith(f"JobService/{method}"), root.name
        assert job.context.trace_id == root.context.trace_id
        children = {s.name for s in spans if s.parent and s.parent.span_id == job.context.span_id}
        assert stages <= children, children
        # The outcome comes back with the worker's context: the gateway records it in the trace.
        recorded = [
            s
            for s in spans
            if s.name == "record event" and s.context.trace_id == root.context.trace_id
        ]
        assert recorded, f"no 'record event' span in the {kind} trace"
        publish = [
            s for s in spans if s.name == "publish" and s.context.trace_id == root.context.trace_id
        ]
        assert publish and publish[0].parent.span_id == root.context.span_id
        validate = [s for s in spans if s.name == "validate" and s.parent == root.context]
        assert validate, f"no 'validate' span under the {kind} RPC"


def test_with_tracing_on_every_kind_of_handler_still_answers(traced, tmp_path: Path) -> None:
    """The health service's Watch writes to its context instead of yielding: the tracing link
    must enclose it like any other call (the OpenTelemetry gRPC interceptor did not)."""
    gateway = running_gateway(gateway_settings(tmp_path / "data"))
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(), timeout=10
            )
            assert next(iter(watch)).status == health_pb2.HealthCheckResponse.SERVING
            watch.cancel()
            check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert check.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        gateway.stop()
    wait_for(
        lambda: "/grpc.health.v1.Health/Check" in {s.name for s in traced.get_finished_spans()},
        10,
        "a server span for the health check",
    )
