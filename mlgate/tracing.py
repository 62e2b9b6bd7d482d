"""OpenTelemetry traces across the broker: off and free unless ``OTEL_*`` variables turn them on.

The gateway starts a span per RPC (``server.interceptors.TracingInterceptor``) and opens child spans for validate and
publish; the trace context rides in the job message's headers (W3C ``traceparent``) to the worker,
whose spans (queue wait, load, fit, score, save, or the prediction) join the same trace, and back in
its events' headers. With tracing off, ``span`` is an empty context manager and no OpenTelemetry
module is imported.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "configure_tracing",
    "enabled",
    "extract",
    "inject",
    "record_span",
    "span",
    "tracing_requested",
]

log = logging.getLogger(__name__)

_tracer: Any = None  # an opentelemetry Tracer once configured


def tracing_requested(env: Mapping[str, str] | None = None) -> bool:
    """Whether the standard variables ask for traces (an OTLP endpoint, or an explicit exporter)."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").lower()
    if exporter == "none":
        return False
    return bool(
        exporter
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure_tracing(service: str, *, exporter: Any = None) -> bool:
    """Set up the tracer provider for this process; returns whether tracing is on.

    ``exporter`` (tests: an in-memory exporter) replaces the OTLP exporter the variables configure.
    """
    global _tracer
    if exporter is None and not tracing_requested():
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
    )
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _tracer = provider.get_tracer("mlgate")
    log.info("tracing on: spans exported over OTLP as service %s", service)
    return True


def enabled() -> bool:
    return _tracer is not None


def inject(headers: tuple[tuple[str, str], ...] = ()) -> tuple[tuple[str, str], ...]:
    """``headers`` plus the current trace context (unchanged when tracing is off)."""
    if _tracer is None:
        return headers
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return (*headers, *carrier.items())


def extract(headers: tuple[tuple[str, str], ...]) -> Any:
    """The trace context carried by message ``headers`` (None when tracing is off)."""
    if _tracer is None:
        return None
    from opentelemetry import propagate

    return propagate.extract(dict(headers))


@contextlib.contextmanager
def span(
    name: str, *, parent: Any = None, server: bool = False, **attributes: Any
) -> Iterator[None]:
    """A span named ``name``, a child of the current one or of ``parent`` (from ``extract``);
    ``server`` marks a span that answers a remote call."""
    if _tracer is None:
        yield
        return
    from opentelemetry.trace import SpanKind

    with _tracer.start_as_current_span(
        name,
        context=parent,
        kind=SpanKind.SERVER if server else SpanKind.INTERNAL,
        attributes={k: str(v) for k, v in attributes.items()},
    ):
        yield


def record_span(name: str, start_ns: int, end_ns: int, **attributes: Any) -> None:
    """A span for something that happened outside this process's view (a job waiting in a queue),
    with the times it started and ended; a child of the current span."""
    if _tracer is None:
        return
    started = _tracer.start_span(
        name, start_time=start_ns, attributes={k: str(v) for k, v in attributes.items()}
    )
    started.end(end_time=max(start_ns, end_ns))


def reset_for_tests() -> None:
    """Turn tracing off again in this process (tests configure it with an in-memory exporter)."""
    global _tracer
    _tracer = None
