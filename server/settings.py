"""The gateway's settings, read from ``MLGATE_*`` variables at its entry point (``server.main``).

Only the composition root (``server.app.Gateway``) holds them whole; every other module is
handed the few values it uses.
"""

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

__all__ = ["DRAIN_GRACE", "MAX_MESSAGE_BYTES", "GatewaySettings", "TLSFiles"]

#: The largest message gRPC receives for the RPCs other than ModelInfer (a Predict of many rows,
#: an UploadDataset chunk), and sends.
MAX_MESSAGE_BYTES = 64 * 2**20
#: Seconds a stopping gateway gives its running calls (MLGATE_DRAIN_GRACE's default).
DRAIN_GRACE = 10.0

_JOB_STORE_SCHEMES = ("sqlite", "redis", "rediss", "postgresql", "postgres")


@dataclass(frozen=True, repr=False)
class GatewaySettings:
    """What a gateway serves on, what it depends on, and the bounds it holds requests to."""

    # Loopback unless the operator chooses otherwise (0.0.0.0 or [::] for every interface).
    host: str = "127.0.0.1"
    port: int = 50051
    tls: TLSFiles = field(default_factory=TLSFiles)
    # Token roles (see mlgate/tokens.py); empty: an open gateway, as without authentication.
    auth_tokens_file: str = ""
    # Prometheus endpoint (/metrics only): off unless a port is given (0 picks a free port), on
    # loopback unless the operator chooses otherwise; over TLS with ``tls``'s files when
    # metrics_tls holds them (MLGATE_METRICS_TLS=1).
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    metrics_tls: TLSFiles | None = None
    # The Open Inference Protocol's REST binding (server/inference_rest.py): off unless a port is
    # given (0 picks a free port); on ``host``, over TLS with ``tls``'s files like the gRPC port.
    http_port: int | None = None
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    data_dir: Path = field(default_factory=lambda: variables.data_dir({}))
    # The job store (MLGATE_STORE_URL; default: SQLite in the data directory). Its keys go under
    # the broker's namespace, and a rediss:// one trusts the broker's CA: MLGATE_NAMESPACE and
    # MLGATE_BROKER_CA name both.
    store_url: str = field(default="", metadata=variables.URL)
    # Finished jobs (records, rows, events) are deleted this many seconds after they ended; 0 keeps.
    job_retention: float = 30 * 24 * 3600.0
    # The object store (MLGATE_STORAGE_URL; default: the data directory's storage folder).
    storage_url: str = field(default="", metadata=variables.URL)
    # The largest model the gateway reads or exports, counted unpacked.
    max_model_bytes: int = 512 * 1024 * 1024
    # How long a publish may wait for the broker before UNAVAILABLE.
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
    # Bounds of one ModelInfer request: rows, and bytes as sent and as its tensors decode; and
    # of the requests' bytes the batcher holds for the workers at once (waiting or out).
    infer_max_rows: int = 100_000
    infer_max_bytes: int = 64 * 2**20
    infer_max_bytes_in_flight: int = 256 * 2**20
    # Input drift (server/drift.py): each model version's window of its last served input rows;
    # 0 turns tracking off.
    drift_window: int = 1000

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        host: str | None = None,
        data_dir: Path | None = None,
    ) -> Self:
        """The settings ``MLGATE_*`` variables give; the keywords (CLI flags) win when given."""
        env = os.environ if env is None else env
        data = variables.data_dir(env, data_dir)
        broker = BrokerSettings.from_env(env)
        settings = cls(
            host=host or env.get("MLGATE_HOST") or "127.0.0.1",
            port=port if port is not None else int(env.get("MLGATE_PORT", "50051")),
            tls=TLSFiles.from_env(env),
            auth_tokens_file=env.get("MLGATE_AUTH_TOKENS_FILE", ""),
            metrics_port=variables.optional_port(env, "MLGATE_METRICS_PORT"),
            metrics_host=env.get("MLGATE_METRICS_HOST") or "127.0.0.1",
            metrics_tls=variables.metrics_tls(env),
            http_port=variables.optional_port(env, "MLGATE_HTTP_PORT"),
            broker=broker,
            data_dir=data,
            store_url=variables.url(env, "MLGATE_STORE_URL", _JOB_STORE_SCHEMES)
            or f"sqlite://{data / 'jobs.db'}",
            job_retention=variables.positive(env, "MLGATE_JOB_RETENTION", "2592000", zero=True),
            storage_url=variables.storage_url(env, data),
            max_model_bytes=int(env.get("MLGATE_MAX_MODEL_BYTES", str(512 * 1024 * 1024))),
            publish_timeout=float(env.get("MLGATE_PUBLISH_TIMEOUT", "10")),
            outbox_after=variables.seconds(env, "MLGATE_OUTBOX_AFTER", 30.0),
            outbox_give_up=variables.seconds(env, "MLGATE_OUTBOX_GIVE_UP", 300.0),
            drain_delay=variables.seconds(env, "MLGATE_DRAIN_DELAY", 0.0, zero=True),
            drain_grace=variables.seconds(env, "MLGATE_DRAIN_GRACE", DRAIN_GRACE, zero=True),
            batch_max_rows=variables.positive(env, "MLGATE_BATCH_MAX_ROWS", "4096"),
            batch_max_delay_us=variables.positive(
                env, "MLGATE_BATCH_MAX_DELAY_US", "2000", zero=True
            ),
            infer_timeout=float(env.get("MLGATE_INFER_TIMEOUT", "30")),
            infer_max_rows=variables.positive(env, "MLGATE_INFER_MAX_ROWS", "100000"),
            infer_max_bytes=variables.size(env, "MLGATE_INFER_MAX_BYTES") or 64 * 2**20,
            infer_max_bytes_in_flight=variables.size(env, "MLGATE_INFER_MAX_BYTES_IN_FLIGHT")
            or 256 * 2**20,
            drift_window=variables.positive(
                env,
                "MLGATE_DRIFT_WINDOW",
                "1000",
                zero=True,
                highest=100_000,
                why=" (a window holds a byte per feature per row, for each of 256 versions)",
            ),
        )
        settings.check_outbox()
        settings.check_inference()
        return settings

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

    def check_inference(self) -> None:
        """``ValueError`` for an in-flight bound that a single request may exceed."""
        if self.infer_max_bytes_in_flight < self.infer_max_bytes:
            raise ValueError(
                f"MLGATE_INFER_MAX_BYTES_IN_FLIGHT ({self.infer_max_bytes_in_flight} bytes) must "
                f"be at least MLGATE_INFER_MAX_BYTES ({self.infer_max_bytes} bytes): a request "
                "of the largest size could never be taken"
            )

    @property
    def max_message_bytes(self) -> int:
        """gRPC's bound on a received message: above the largest request any RPC takes, so
        that a ModelInfer request over its own bound is told MLGATE_INFER_MAX_BYTES."""
        return max(MAX_MESSAGE_BYTES, self.infer_max_bytes + 2**20)

    def with_(self, **changes: object) -> GatewaySettings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def describe(self) -> str:
        """A one-line summary safe to log: URLs have their passwords redacted."""
        return (
            f"{self.broker.describe()} store={redact_url(self.store_url)} "
            f"storage={redact_url(self.storage_url)} data_dir={self.data_dir}"
        )

    __repr__ = variables.redacted_repr
