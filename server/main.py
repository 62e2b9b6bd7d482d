"""The gateway's entry points: ``mlgate serve`` (gateway and workers) and ``mlgate gateway``."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Mapping
from pathlib import Path

from mlgate import env as variables
from mlgate.logs import configure_logging
from mlgate.tracing import configure_tracing
from mlgate.v1 import jobs_pb2
from server.app import serve
from server.settings import GatewaySettings

__all__ = ["after_record_fault", "run_gateway"]

log = logging.getLogger(__name__)


def run_gateway(
    *,
    port: int | None,
    data_dir: Path | None,
    embedded_workers: bool,
    host: str | None = None,
    on_ready: Callable[[str, int], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT; ``on_ready(host, port)`` is called once serving.

    Raises ``ValueError`` for a bad setting, and PortInUse for a taken port, before serving.
    """
    settings = GatewaySettings.from_env(port=port, data_dir=data_dir, host=host)
    workers = None
    if embedded_workers:
        from workers.settings import WorkerSettings  # nothing of the workers' for `mlgate gateway`

        workers = WorkerSettings.from_env(data_dir=data_dir)
    configure_logging()
    configure_tracing("mlgate" if embedded_workers else "mlgate-gateway")
    serve(
        settings,
        workers=workers,
        on_ready=on_ready,
        after_record=after_record_fault(os.environ),
    )


def after_record_fault(env: Mapping[str, str]) -> Callable[[jobs_pb2.Job], None] | None:
    """A TEST-ONLY fault point: with ``MLGATE_FAULT_AFTER_RECORD=N`` the gateway kills itself
    (SIGKILL) right after recording its Nth job and before publishing it, the one instant no
    outside fault can be timed to hit; the outbox tests use it. Not a setting: it is read here
    only, and documented in docs/development.md alone."""
    if not env.get("MLGATE_FAULT_AFTER_RECORD"):
        return None
    last = variables.positive(env, "MLGATE_FAULT_AFTER_RECORD", "1")
    recorded = 0

    def fault(job: jobs_pb2.Job) -> None:
        nonlocal recorded
        recorded += 1
        if recorded == last:
            log.warning("MLGATE_FAULT_AFTER_RECORD: killed after recording job %s", job.id)
            os.kill(os.getpid(), signal.SIGKILL)

    log.warning("MLGATE_FAULT_AFTER_RECORD=%d: a test's fault point is on", last)
    return fault
