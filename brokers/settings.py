"""Which broker a process uses and how it reaches it, read from the environment at an entry point.

``MLGATE_BROKER`` names the backend: ``memory`` (the default, ``EMBEDDED``), ``rabbitmq`` or
``redis``. Its URL is ``MLGATE_BROKER_URL`` when set, else the backend's own variable
(``MLGATE_RABBITMQ_URL``, ``MLGATE_REDIS_URL``: a deployment may name both brokers and switch
with ``MLGATE_BROKER`` alone), else ``DEFAULT_URLS``, the one place default broker URLs live.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Self

from mlgate import env as variables
from mlgate.urls import redact_url

__all__ = ["BROKERS", "DEFAULT_URLS", "EMBEDDED", "BrokerSettings"]

BROKERS = ("memory", "rabbitmq", "redis")
#: The broker that lives inside one process (``mlgate serve``): no server of its own to run.
EMBEDDED = "memory"
DEFAULT_URLS = {
    "memory": "memory://",
    "rabbitmq": "amqp://guest:guest@localhost:5672/%2F",
    "redis": "redis://localhost:6379/0",
}
_URL_VARIABLES = {"rabbitmq": "MLGATE_RABBITMQ_URL", "redis": "MLGATE_REDIS_URL"}
_SCHEMES = {"rabbitmq": ("amqp", "amqps"), "redis": ("redis", "rediss")}


@dataclass(frozen=True, repr=False)
class BrokerSettings:
    """One broker: its backend, URL, namespace, and the Redis backend's thresholds."""

    kind: str = EMBEDDED
    url: str = field(default=DEFAULT_URLS[EMBEDDED], metadata=variables.URL)
    # Prefix of every queue, exchange, stream and key: several deployments (or test runs) can
    # share one RabbitMQ or Redis.
    namespace: str = "mlgate"
    # CA trusted for amqps:// and rediss:// (MLGATE_BROKER_CA); empty: the system's trust store.
    ca_file: str = ""
    # The Redis backend's crash recovery (a consumer silent this long is dead; how often each
    # looks for the entries of dead ones) and retention of events and dead letters, in seconds.
    redis_heartbeat_ttl: float = 15.0
    redis_reclaim_interval: float = 5.0
    redis_event_retention: float = 24 * 3600.0
    redis_dead_letter_retention: float = 14 * 24 * 3600.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, kind: str | None = None) -> Self:
        """The broker the ``MLGATE_*`` variables describe; ``kind`` (a CLI flag) wins."""
        env = os.environ if env is None else env
        kind = kind or env.get("MLGATE_BROKER", EMBEDDED)
        if kind not in BROKERS:
            raise ValueError(f"MLGATE_BROKER must be one of {', '.join(BROKERS)}, not {kind!r}")
        return cls(
            kind=kind,
            url=_url(kind, env),
            namespace=env.get("MLGATE_NAMESPACE", "mlgate"),
            ca_file=env.get("MLGATE_BROKER_CA", ""),
            redis_heartbeat_ttl=float(env.get("MLGATE_REDIS_HEARTBEAT_TTL", "15")),
            redis_reclaim_interval=float(env.get("MLGATE_REDIS_RECLAIM_INTERVAL", "5")),
            redis_event_retention=float(env.get("MLGATE_REDIS_EVENT_RETENTION", "86400")),
            redis_dead_letter_retention=float(
                env.get("MLGATE_REDIS_DEAD_LETTER_RETENTION", "1209600")
            ),
        )

    @property
    def embedded(self) -> bool:
        """Whether this broker lives inside one process (nothing to connect to)."""
        return self.kind == EMBEDDED

    def with_(self, **changes: object) -> BrokerSettings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def describe(self) -> str:
        """A summary safe to log: the URL's password is redacted."""
        return f"broker={self.kind} broker_url={redact_url(self.url)}"

    __repr__ = variables.redacted_repr


def _url(kind: str, env: Mapping[str, str]) -> str:
    if kind not in _SCHEMES:
        return DEFAULT_URLS[kind]
    for variable in ("MLGATE_BROKER_URL", _URL_VARIABLES[kind]):
        if env.get(variable):
            return variables.url(env, variable, _SCHEMES[kind])
    return DEFAULT_URLS[kind]
