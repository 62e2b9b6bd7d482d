"""mlgate's Prometheus metrics: every name in one place, so the dashboard and docs can check them.

Counters and histograms are updated in-process where the event happens (a dictionary lookup and an
add: cheap enough for the hot path). Gauges that describe the broker (workers alive, queue depth)
are read from it when Prometheus scrapes, never polled. ``serve_metrics`` starts the HTTP endpoint
(``mlgate.metrics_http``); without it the metrics cost nothing but those adds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mlgate.metrics_http import MetricsServer
from mlgate.tls import TLSFiles
from mlgate.v1 import jobs_pb2

if TYPE_CHECKING:
    from brokers.base import BrokerStats

__all__ = [
    "BROKER_RECONNECTS",
    "INFERENCE_BATCH_ROWS",
    "INFERENCE_REQUESTS",
    "JOBS_FINISHED",
    "JOBS_RUNNING",
    "JOBS_SUBMITTED",
    "JOB_DURATION",
    "JOB_QUEUE_TIME",
    "JOB_REDELIVERIES",
    "METRIC_NAMES",
    "MODEL_CACHE_BYTES",
    "MODEL_CACHE_HITS",
    "MODEL_CACHE_MISSES",
    "STREAMS_OPEN",
    "WORKER_LOSSES",
    "BrokerCollector",
    "job_ended",
    "job_started",
    "kind_label",
    "serve_metrics",
]

log = logging.getLogger(__name__)

# Jobs run from milliseconds (a prediction) to hours (a large fit).
_JOB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384, 65536)

JOBS_SUBMITTED = Counter("mlgate_jobs_submitted", "Jobs accepted by a gateway.", ["kind"])
JOBS_FINISHED = Counter(
    "mlgate_jobs_finished", "Jobs that reached an end state.", ["kind", "state"]
)
JOB_DURATION = Histogram(
    "mlgate_job_duration_seconds",
    "From submission to the job's end state.",
    ["kind"],
    buckets=_JOB_BUCKETS,
)
JOB_QUEUE_TIME = Histogram(
    "mlgate_job_queue_seconds",
    "From submission to the job's first RUNNING event.",
    ["kind"],
    buckets=_JOB_BUCKETS,
)
INFERENCE_REQUESTS = Counter(
    "mlgate_inference_requests", "Prediction calls answered, by gRPC status code.", ["code"]
)
INFERENCE_BATCH_ROWS = Histogram(
    "mlgate_inference_batch_rows", "Rows per model evaluation in a worker.", buckets=_ROW_BUCKETS
)
MODEL_CACHE_HITS = Counter("mlgate_model_cache_hits", "Models served from a worker's cache.")
MODEL_CACHE_MISSES = Counter("mlgate_model_cache_misses", "Models loaded from storage.")
MODEL_CACHE_BYTES = Gauge("mlgate_model_cache_bytes", "Bytes of models held in a worker's cache.")
BROKER_RECONNECTS = Counter("mlgate_broker_reconnects", "Connections re-established to the broker.")
STREAMS_OPEN = Gauge("mlgate_streams_open", "Job event streams open on a gateway.")
JOBS_RUNNING = Gauge(
    "mlgate_jobs_running", "Jobs the workers a gateway hears say they are running.", ["kind"]
)
JOB_REDELIVERIES = Counter(
    "mlgate_job_redeliveries",
    "Deliveries of a job after its first (an attempt ended without an outcome), by the worker.",
    ["kind"],
)
WORKER_LOSSES = Counter(
    "mlgate_worker_losses", "Workers a gateway counted out: no heartbeat for their interval."
)

#: Every mlgate metric as Prometheus exposes it (counters gain ``_total``), for the dashboard test.
METRIC_NAMES = frozenset(
    {
        "mlgate_jobs_submitted_total",
        "mlgate_jobs_finished_total",
        "mlgate_job_duration_seconds",
        "mlgate_job_queue_seconds",
        "mlgate_inference_requests_total",
        "mlgate_inference_batch_rows",
        "mlgate_model_cache_hits_total",
        "mlgate_model_cache_misses_total",
        "mlgate_model_cache_bytes",
        "mlgate_broker_reconnects_total",
        "mlgate_streams_open",
        "mlgate_jobs_running",
        "mlgate_job_redeliveries_total",
        "mlgate_worker_losses_total",
        "mlgate_workers",
        "mlgate_queue_depth",
        "mlgate_queue_oldest_seconds",
        "mlgate_stream_lag",
        "mlgate_stream_pending",
    }
)


_KINDS: dict[int, str] = {
    jobs_pb2.JOB_KIND_TRAIN: "train",
    jobs_pb2.JOB_KIND_PREDICT: "predict",
    jobs_pb2.JOB_KIND_SEARCH: "search",
    jobs_pb2.JOB_KIND_SCORE: "score",
    jobs_pb2.JOB_KIND_TRIAL: "trial",
    jobs_pb2.JOB_KIND_SHARD: "shard",
}
_ENDS: dict[int, str] = {
    jobs_pb2.JOB_STATE_SUCCEEDED: "succeeded",
    jobs_pb2.JOB_STATE_FAILED: "failed",
    jobs_pb2.JOB_STATE_CANCELLED: "cancelled",
}


def kind_label(kind: int) -> str:
    return _KINDS.get(kind, "unknown")


def _seconds_since_creation(job: jobs_pb2.Job, when: float) -> float:
    return max(0.0, when - job.create_time.ToNanoseconds() / 1e9)


def job_started(job: jobs_pb2.Job, now: float) -> None:
    """A worker took ``job`` for its first attempt at ``now`` (epoch seconds)."""
    JOB_QUEUE_TIME.labels(kind_label(job.kind)).observe(_seconds_since_creation(job, now))


def job_ended(job: jobs_pb2.Job) -> None:
    """``job`` (as recorded, in its end state) has just ended: count it once, where recorded."""
    state = _ENDS.get(job.state)
    if state is None:
        return
    kind = kind_label(job.kind)
    JOBS_FINISHED.labels(kind, state).inc()
    ended = job.last_event.time.ToNanoseconds() / 1e9 if job.last_event.HasField("time") else 0.0
    if ended:
        JOB_DURATION.labels(kind).observe(_seconds_since_creation(job, ended))


class BrokerCollector(Collector):
    """The broker's figures, read from it at scrape time: ``mlgate_workers``, each queue's
    ``mlgate_queue_depth`` and ``mlgate_queue_oldest_seconds`` (from the job store where the
    broker cannot tell; left out where neither can), and on a broker built on streams each work
    stream's consumer group ``mlgate_stream_lag`` and ``mlgate_stream_pending``, named as an
    autoscaler names them."""

    def __init__(self, read: Callable[[], tuple[int, BrokerStats]]) -> None:
        # ``read`` returns (workers alive, the broker's stats).
        self._read = read

    def collect(self) -> Iterable[Metric]:
        workers = GaugeMetricFamily(
            "mlgate_workers", "Workers alive: those whose heartbeats the gateway hears."
        )
        depth = GaugeMetricFamily(
            "mlgate_queue_depth", "Jobs waiting in a broker queue.", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "mlgate_queue_oldest_seconds",
            "Seconds the oldest job waiting in a broker queue has waited; 0 when none waits.",
            labels=["queue"],
        )
        stream = ["queue", "stream", "group"]
        lag = GaugeMetricFamily(
            "mlgate_stream_lag", "Entries of a work stream not yet delivered.", labels=stream
        )
        pending = GaugeMetricFamily(
            "mlgate_stream_pending", "Entries delivered and not yet acknowledged.", labels=stream
        )
        try:
            alive, stats = self._read()
        except Exception as exc:  # a scrape during an outage shows the gap, not an error page
            log.debug("broker figures unavailable for /metrics: %s", exc)
            return []
        workers.add_metric([], alive)
        for queue in stats.queues:
            depth.add_metric([queue.name], queue.depth)
            if queue.oldest_seconds is not None:
                oldest.add_metric([queue.name], queue.oldest_seconds)
        for group in stats.groups:
            names = [group.queue, group.stream, group.group]
            lag.add_metric(names, group.lag)
            pending.add_metric(names, group.pending)
        return [workers, depth, oldest, lag, pending]


_registered: BrokerCollector | None = None


def serve_metrics(
    port: int,
    host: str,
    broker_figures: BrokerCollector | None = None,
    *,
    tls: TLSFiles | None = None,
) -> MetricsServer:
    """Serve ``/metrics`` on ``host:port`` (port 0 picks one), over TLS with ``tls``'s files
    when given (``mlgate.metrics_http``)."""
    global _registered
    if broker_figures is not None:
        if _registered is not None:
            REGISTRY.unregister(_registered)
        REGISTRY.register(broker_figures)
        _registered = broker_figures
    return MetricsServer(port, host, tls=tls)
