"""The gateway's entry points: ``mlgate serve`` (gateway and workers) and ``mlgate gateway``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mlgate.logs import configure_logging
from mlgate.settings import Settings
from mlgate.tracing import configure_tracing
from server.app import serve

__all__ = ["run_gateway"]


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
    settings = Settings.from_env(port=port, data_dir=data_dir, host=host)
    configure_logging()
    configure_tracing("mlgate" if embedded_workers else "mlgate-gateway")
    serve(settings, embedded_workers=embedded_workers, on_ready=on_ready)
