"""A whole system's settings in one test: the gateway's and its embedded worker's, each the
part's own frozen dataclass, changed together by keyword as a test names them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brokers.settings import BrokerSettings
from server.settings import GatewaySettings
from workers.settings import WorkerSettings

__all__ = ["SystemSettings"]

# Keywords that change the broker both parts share, as the variables name them.
_BROKER = {
    "broker": "kind",
    "broker_url": "url",
    "namespace": "namespace",
    "broker_ca": "ca_file",
    "redis_heartbeat_ttl": "redis_heartbeat_ttl",
    "redis_reclaim_interval": "redis_reclaim_interval",
    "redis_event_retention": "redis_event_retention",
    "redis_dead_letter_retention": "redis_dead_letter_retention",
}
# Keywords that name the gateway's TLS files.
_TLS = {"tls_cert": "cert", "tls_key": "key", "tls_client_ca": "client_ca"}
_GATEWAY = {f.name for f in dataclasses.fields(GatewaySettings)} - {"broker"}
_WORKER = {f.name for f in dataclasses.fields(WorkerSettings)} - {"broker", "metrics_port"}


@dataclass(frozen=True)
class SystemSettings:
    """The settings of a gateway and of the worker it embeds, on one broker."""

    gateway: GatewaySettings
    worker: WorkerSettings

    @classmethod
    def from_env(cls, env: dict[str, str], data_dir: Path) -> SystemSettings:
        return cls(
            GatewaySettings.from_env(env, data_dir=data_dir),
            WorkerSettings.from_env(env, data_dir=data_dir),
        )

    def with_(self, **changes: Any) -> SystemSettings:
        """Each change goes to the part that has it, or to both, named as the variables name
        them: the broker's keywords to the broker they share, ``tls_*`` to the gateway's TLS
        files, ``metrics_port`` to the gateway, ``worker_metrics_port`` to the worker."""
        broker: dict[str, Any] = {}
        tls: dict[str, Any] = {}
        gateway: dict[str, Any] = {}
        worker: dict[str, Any] = {}
        for name, value in changes.items():
            if name in _BROKER:
                broker[_BROKER[name]] = value
            elif name in _TLS:
                tls[_TLS[name]] = value
            elif name == "worker_metrics_port":
                worker["metrics_port"] = value
            elif name in _GATEWAY or name in _WORKER:
                if name in _GATEWAY:
                    gateway[name] = value
                if name in _WORKER:
                    worker[name] = value
            else:
                raise TypeError(f"no part of the system has a setting {name!r}")
        shared: BrokerSettings = self.gateway.broker.with_(**broker)
        if tls:
            gateway["tls"] = dataclasses.replace(self.gateway.tls, **tls)
        return SystemSettings(
            self.gateway.with_(broker=shared, **gateway),
            self.worker.with_(broker=shared, **worker),
        )

    @property
    def broker(self) -> BrokerSettings:
        return self.gateway.broker

    @property
    def data_dir(self) -> Path:
        return self.gateway.data_dir

    @property
    def storage_url(self) -> str:
        return self.gateway.storage_url
