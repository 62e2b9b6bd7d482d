"""Settings as small frozen dataclasses, built from the environment at an entry point only."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Self

from brokers.settings import BrokerSettings
from mlgate import env as variables
from mlgate.urls import redact_url

__all__ = ["DRAIN_GRACE", "Settings", "redact_url"]

#: Seconds a stopping gateway gives its running calls (MLGATE_DRAIN_GRACE's default).
DRAIN_GRACE = 10.0


def _default_memory_limit() -> int:
    """Half of this machine's memory: a runaway fit fails before the kernel's OOM killer acts."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = 8 * 2**30
    return int(total // 2)


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "mlgate"


@dataclass(frozen=True)
class Settings:
    """Everything the gateway and workers are configured with."""

    port: int = 50051
    # Loopback unless the operator chooses otherwise (0.0.0.0 or [::] for every interface).
    host: str = "127.0.0.1"
    data_dir: Path = field(default_factory=_default_data_dir)
    broker: str = "memory"
    broker_url: str = field(default="memory://", repr=False)
    store_url: str = field(default="", repr=False)
    storage_url: str = field(default="", repr=False)
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
    train_memory_limit: int = field(default_factory=lambda: _default_memory_limit())
    # Cores one fit may use: caps n_jobs. 0 shares this machine's cores among train_concurrency.
    fit_cores: int = 0
    model_cache_bytes: int = 512 * 1024 * 1024
    # The largest model a worker saves or loads, counted unpacked: a bound on a crafted artifact.
    max_model_bytes: int = 512 * 1024 * 1024
    # How long a gateway publish may wait for the broker before UNAVAILABLE.
    publish_timeout: float = 10.0
    # The outbox (server/outbox.py): a job recorded and not known to be published for this many
    # seconds is published by any gateway's sweeper (above publish_timeout, so a publish still
    # under way is not doubled); one that cannot be published within outbox_give_up seconds of
    # its submission ends FAILED.
    outbox_after: float = 30.0
    outbox_give_up: float = 300.0
    # Stopping (SIGTERM): health says NOT_SERVING while calls are still taken for drain_delay
    # seconds, so load balancers stop sending; then new calls are refused and running ones have
    # drain_grace seconds to finish.
    drain_delay: float = 0.0
    drain_grace: float = DRAIN_GRACE
    # Bounds a client's request; larger CSVs go through UploadDataset in chunks.
    max_predict_rows: int = 10_000
    # Online inference (ModelInfer): requests for one model that arrive while the gateway's
    # earlier batches for it are still out are sent together, up to this many rows, and none
    # waits longer than the delay; a lone request goes at once.
    batch_max_rows: int = 4096
    batch_max_delay_us: int = 2000
    # How long a ModelInfer waits for a worker when its client set no deadline.
    infer_timeout: float = 30.0
    # Inference batches one worker evaluates at once.
    infer_concurrency: int = 2
    # Finished jobs (records, rows, events) are deleted this many seconds after they ended; 0 keeps.
    job_retention: float = 30 * 24 * 3600.0
    # Prefix of every broker queue, exchange, stream and key: several deployments (or test runs)
    # can share one RabbitMQ or Redis.
    namespace: str = "mlgate"
    # Redis broker (MLGATE_BROKER=redis): key prefix, crash-recovery thresholds, retention (s).
    redis_heartbeat_ttl: float = 15.0
    redis_reclaim_interval: float = 5.0
    redis_event_retention: float = 24 * 3600.0
    redis_dead_letter_retention: float = 14 * 24 * 3600.0
    # PEM paths: a certificate and key make the gateway serve TLS only; a client CA makes it
    # require client certificates that CA signed (mTLS).
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # Token roles (see server/tokens.py); empty: an open gateway, as without authentication.
    auth_tokens_file: str = ""
    # CA trusted for amqps:// and rediss:// connections (the broker and a Redis job store);
    # empty: the system's trust store.
    broker_ca: str = ""
    # Prometheus endpoints (/metrics): off unless a port is given; 0 picks a free port.
    metrics_port: int | None = None
    worker_metrics_port: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Self:
        """Settings from ``MLGATE_*`` variables; keyword overrides (CLI flags) win."""
        env = os.environ if env is None else env
        broker = BrokerSettings.from_env(env, kind=str(overrides.pop("broker", None) or "") or None)
        data_dir = (
            Path(
                str(
                    overrides.pop("data_dir", None)
                    or env.get("MLGATE_DATA_DIR")
                    or _default_data_dir()
                )
            )
            .expanduser()
            .absolute()
        )
        values: dict[str, object] = {
            "broker": broker.kind,
            "data_dir": data_dir,
            "port": int(env.get("MLGATE_PORT", "50051")),
            "host": env.get("MLGATE_HOST") or "127.0.0.1",
            "broker_url": broker.url,
            "store_url": variables.url(
                env, "MLGATE_STORE_URL", ("sqlite", "redis", "rediss", "postgresql", "postgres")
            )
            or f"sqlite:///{data_dir / 'jobs.db'}",
            "storage_url": variables.url(env, "MLGATE_STORAGE_URL", ("file", "s3"))
            or (data_dir / "storage").as_uri(),
            "max_attempts": int(env.get("MLGATE_MAX_ATTEMPTS", "3")),
            "outage_retry_seconds": variables.seconds(
                env, "MLGATE_OUTAGE_RETRY_SECONDS", 300.0, zero=True
            ),
            "predict_prefetch": int(env.get("MLGATE_PREDICT_PREFETCH", "16")),
            "train_concurrency": int(env.get("MLGATE_TRAIN_CONCURRENCY", "1")),
            "fit_cores": int(env.get("MLGATE_FIT_CORES", "0")),
            "train_timeout": variables.seconds(env, "MLGATE_TRAIN_TIMEOUT", 3600.0),
            "train_memory_limit": variables.size(env, "MLGATE_TRAIN_MEMORY_LIMIT")
            or _default_memory_limit(),
            "model_cache_bytes": int(env.get("MLGATE_MODEL_CACHE_BYTES", str(512 * 1024 * 1024))),
            "max_model_bytes": int(env.get("MLGATE_MAX_MODEL_BYTES", str(512 * 1024 * 1024))),
            "publish_timeout": float(env.get("MLGATE_PUBLISH_TIMEOUT", "10")),
            "outbox_after": variables.seconds(env, "MLGATE_OUTBOX_AFTER", 30.0),
            "outbox_give_up": variables.seconds(env, "MLGATE_OUTBOX_GIVE_UP", 300.0),
            "drain_delay": variables.seconds(env, "MLGATE_DRAIN_DELAY", 0.0, zero=True),
            "drain_grace": variables.seconds(env, "MLGATE_DRAIN_GRACE", DRAIN_GRACE, zero=True),
            "batch_max_rows": variables.positive(env, "MLGATE_BATCH_MAX_ROWS", "4096"),
            "batch_max_delay_us": variables.positive(
                env, "MLGATE_BATCH_MAX_DELAY_US", "2000", zero=True
            ),
            "infer_timeout": float(env.get("MLGATE_INFER_TIMEOUT", "30")),
            "infer_concurrency": variables.positive(env, "MLGATE_INFER_CONCURRENCY", "2"),
            "job_retention": variables.positive(env, "MLGATE_JOB_RETENTION", "2592000", zero=True),
            "namespace": broker.namespace,
            "redis_heartbeat_ttl": broker.redis_heartbeat_ttl,
            "redis_reclaim_interval": broker.redis_reclaim_interval,
            "redis_event_retention": broker.redis_event_retention,
            "redis_dead_letter_retention": broker.redis_dead_letter_retention,
            "tls_cert": env.get("MLGATE_TLS_CERT", ""),
            "tls_key": env.get("MLGATE_TLS_KEY", ""),
            "tls_client_ca": env.get("MLGATE_TLS_CLIENT_CA", ""),
            "auth_tokens_file": env.get("MLGATE_AUTH_TOKENS_FILE", ""),
            "broker_ca": broker.ca_file,
        }
        for name, variable in (
            ("metrics_port", "MLGATE_METRICS_PORT"),
            ("worker_metrics_port", "MLGATE_WORKER_METRICS_PORT"),
        ):
            if env.get(variable):
                values[name] = variables.port(variable, env[variable])
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check_tls()
        settings.check_outbox()
        return settings

    def check_tls(self) -> None:
        """``ValueError`` for TLS settings that cannot work together."""
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("MLGATE_TLS_CERT and MLGATE_TLS_KEY go together: set both or neither")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError(
                "MLGATE_TLS_CLIENT_CA needs MLGATE_TLS_CERT and MLGATE_TLS_KEY: "
                "client certificates are only asked for over TLS"
            )

    def check_outbox(self) -> None:
        """``ValueError`` for outbox times that would publish a job twice or give up at once."""
        if self.outbox_after <= self.publish_timeout:
            raise ValueError(
                f"MLGATE_OUTBOX_AFTER ({self.outbox_after:g} s) must be above "
                f"MLGATE_PUBLISH_TIMEOUT ({self.publish_timeout:g} s): a job whose publish is "
                "still under way would be published again"
            )
        if self.outbox_give_up < self.outbox_after:
            raise ValueError(
                f"MLGATE_OUTBOX_GIVE_UP ({self.outbox_give_up:g} s) must be at least "
                f"MLGATE_OUTBOX_AFTER ({self.outbox_after:g} s)"
            )

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def broker_settings(self) -> BrokerSettings:
        """The broker these settings name."""
        return BrokerSettings(
            kind=self.broker,
            url=self.broker_url,
            namespace=self.namespace,
            ca_file=self.broker_ca,
            redis_heartbeat_ttl=self.redis_heartbeat_ttl,
            redis_reclaim_interval=self.redis_reclaim_interval,
            redis_event_retention=self.redis_event_retention,
            redis_dead_letter_retention=self.redis_dead_letter_retention,
        )

    def describe(self) -> str:
        """A one-line summary safe to log: URLs have their passwords redacted."""
        return (
            f"broker={self.broker} broker_url={redact_url(self.broker_url)} "
            f"store={redact_url(self.store_url)} storage={redact_url(self.storage_url)} "
            f"data_dir={self.data_dir}"
        )
