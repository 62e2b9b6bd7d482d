"""A worker's settings, read from ``MLGATE_*`` variables at its entry point (``workers.main``, or
``server.main`` for the workers ``mlgate serve`` embeds)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Self

from brokers.settings import BrokerSettings
from mlgate import env as variables
from mlgate.tls import TLSFiles
from mlgate.urls import redact_url
from workers.parallelism import FITS_PER_CORE, most_fits

__all__ = ["WorkerSettings"]


def _default_memory_limit() -> int:
    """Half of this machine's memory: a runaway fit fails before the kernel's OOM killer acts."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return int(total // 2)


@dataclass(frozen=True, repr=False)
class WorkerSettings:
    """How a worker takes jobs, the limits it runs them under, and where it keeps models."""

    broker: BrokerSettings = field(default_factory=BrokerSettings)
    data_dir: Path = field(default_factory=lambda: variables.data_dir({}))
    # The object store (MLGATE_STORAGE_URL; default: the data directory's storage folder).
    storage_url: str = field(default="", metadata=variables.URL)
    # A delivery beyond this many is dead-lettered and its job FAILED.
    max_attempts: int = 3
    # How long a job waits out an outage of the object store or the broker (retrying with backoff,
    # not counting attempts) before it ends FAILED with UNAVAILABLE; 0 fails it at once.
    outage_retry_seconds: float = 300.0
    # Predictions are short: a worker takes several at once. Training takes one at a time.
    predict_prefetch: int = 16
    train_concurrency: int = 1
    # Each fit runs in a child process of its worker, stopped (FAILED) past these limits: seconds
    # (a request's timeout_seconds may only lower it) and bytes of memory the fit may allocate.
    train_timeout: float = 3600.0
    train_memory_limit: int = field(default_factory=_default_memory_limit)
    # Cores one fit may use: caps n_jobs. 0 shares this machine's cores among train_concurrency.
    fit_cores: int = 0
    model_cache_bytes: int = 512 * 1024 * 1024
    # The largest model a worker saves or loads, counted unpacked: a bound on a crafted artifact.
    max_model_bytes: int = 512 * 1024 * 1024
    # Inference batches one worker evaluates at once.
    infer_concurrency: int = 2
    # How long publishing a job's event may wait for the broker.
    publish_timeout: float = 10.0
    # Seconds within which each heartbeat follows the last (sent three times as often): a gateway
    # counts the worker out once this passes without one.
    heartbeat_seconds: float = 6.0
    # Prometheus endpoint (/metrics only, MLGATE_WORKER_METRICS_PORT): off unless a port is
    # given (0 picks a free port), on loopback unless the operator chooses otherwise; over TLS
    # with these files when given (MLGATE_METRICS_TLS=1 and MLGATE_TLS_*).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    metrics_tls: TLSFiles | None = None

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, data_dir: Path | None = None
    ) -> Self:
        """The settings ``MLGATE_*`` variables give; ``data_dir`` (a CLI flag) wins when given."""
        env = os.environ if env is None else env
        data = variables.data_dir(env, data_dir)
        return cls(
            broker=BrokerSettings.from_env(env),
            data_dir=data,
            storage_url=variables.storage_url(env, data),
            max_attempts=int(env.get("MLGATE_MAX_ATTEMPTS", "3")),
            outage_retry_seconds=variables.seconds(
                env, "MLGATE_OUTAGE_RETRY_SECONDS", 300.0, zero=True
            ),
            predict_prefetch=int(env.get("MLGATE_PREDICT_PREFETCH", "16")),
            train_concurrency=variables.positive(
                env,
                "MLGATE_TRAIN_CONCURRENCY",
                "1",
                highest=most_fits(),
                why=f" ({FITS_PER_CORE} fits per core this process may use)",
            ),
            train_timeout=variables.seconds(env, "MLGATE_TRAIN_TIMEOUT", 3600.0),
            train_memory_limit=variables.size(env, "MLGATE_TRAIN_MEMORY_LIMIT")
            or _default_memory_limit(),
            fit_cores=int(env.get("MLGATE_FIT_CORES", "0")),
            model_cache_bytes=int(env.get("MLGATE_MODEL_CACHE_BYTES", str(512 * 1024 * 1024))),
            max_model_bytes=int(env.get("MLGATE_MAX_MODEL_BYTES", str(512 * 1024 * 1024))),
            infer_concurrency=variables.positive(env, "MLGATE_INFER_CONCURRENCY", "2"),
            publish_timeout=float(env.get("MLGATE_PUBLISH_TIMEOUT", "10")),
            heartbeat_seconds=variables.seconds(env, "MLGATE_HEARTBEAT_SECONDS", 6.0),
            metrics_port=variables.optional_port(env, "MLGATE_WORKER_METRICS_PORT"),
            metrics_host=env.get("MLGATE_METRICS_HOST") or "127.0.0.1",
            metrics_tls=variables.metrics_tls(env),
        )

    def with_(self, **changes: object) -> WorkerSettings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def describe(self) -> str:
        """A one-line summary safe to log: URLs have their passwords redacted."""
        return f"{self.broker.describe()} storage={redact_url(self.storage_url)} data_dir={self.data_dir}"

    __repr__ = variables.redacted_repr
