"""The worker process entry point: ``mlgate worker``."""

from __future__ import annotations

import errno
import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from brokers import BrokerUnavailable, open_broker
from mlgate.logs import configure_logging
from mlgate.metrics import serve_metrics
from mlgate.metrics_http import METRICS_PATH, MetricsServer
from mlgate.tracing import configure_tracing
from storage import open_object_store
from storage.datasets import DatasetCatalog
from storage.models import ModelRepository
from workers.settings import WorkerSettings
from workers.worker import Worker

__all__ = ["main", "run_worker"]

log = logging.getLogger(__name__)

# A SIGTERM lets running jobs finish for this long; the rest go back to the broker unacknowledged.
STOP_GRACE = 30.0


def run_worker(settings: WorkerSettings) -> None:
    """Consume jobs until SIGTERM or SIGINT."""
    # First: a port in use or TLS files that cannot serve stop start-up before anything runs.
    endpoint = _metrics_endpoint(settings)
    broker = open_broker(settings.broker)
    try:
        broker.start()
    except BrokerUnavailable as exc:
        log.warning("broker unavailable at start; retrying in the background: %s", exc)
    objects = open_object_store(settings.storage_url)
    worker = Worker(
        broker,
        DatasetCatalog(objects),
        ModelRepository(objects, settings.max_model_bytes),
        settings,
    )
    worker.start()
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    where = "" if endpoint is None else f"; metrics on {_url(endpoint)}"
    print(f"mlgate worker running ({settings.describe()}{where})", flush=True)
    stopping.wait()
    log.info("stopping: finishing running jobs for up to %.0f s", STOP_GRACE)
    worker.stop(STOP_GRACE)
    broker.close()
    if endpoint is not None:
        endpoint.close()


def _metrics_endpoint(settings: WorkerSettings) -> MetricsServer | None:
    """The worker's ``/metrics``, when MLGATE_WORKER_METRICS_PORT asks for one. Each worker on
    a host needs a port of its own: a taken one is a ``ValueError`` saying so."""
    port = settings.metrics_port
    if port is None:
        return None
    try:
        return serve_metrics(port, settings.metrics_host, tls=settings.metrics_tls)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise ValueError(
            f"MLGATE_WORKER_METRICS_PORT={port} is in use (by another worker on this host?): "
            "each worker on a host needs a port of its own; give each its own "
            "MLGATE_WORKER_METRICS_PORT, or 0 to pick a free one (the worker's start-up line "
            "names it)"
        ) from None


def _url(endpoint: MetricsServer) -> str:
    host, port = endpoint.address
    host = f"[{host}]" if ":" in host else host  # an IPv6 address
    return f"{endpoint.scheme}://{host}:{port}{METRICS_PATH}"


def main(*, data_dir: Path | None) -> None:
    """``mlgate worker``: settings from the environment, then consume until stopped."""
    settings = WorkerSettings.from_env(data_dir=data_dir)
    configure_logging()
    configure_tracing("mlgate-worker")
    run_worker(settings)
