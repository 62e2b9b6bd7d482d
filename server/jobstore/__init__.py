"""Job stores: the contract (``base``), ``sqlite`` (the default), and ``redis`` and ``postgres``
(shared by gateways)."""

from __future__ import annotations

from mlgate.store_errors import JobStoreError, JobStoreUnavailable
from server.jobstore.base import DEFAULT_RETENTION, JobStore

__all__ = ["JobStore", "JobStoreError", "JobStoreUnavailable", "open_job_store"]


def open_job_store(
    url: str,
    namespace: str = "mlgate",
    *,
    ca_file: str | None = None,
    retention: float = DEFAULT_RETENTION,
) -> JobStore:
    """The job store ``MLGATE_STORE_URL`` names: ``sqlite:///path.db``, ``redis://host:port/db``
    (``rediss://`` for TLS, trusting ``ca_file`` when given) or
    ``postgresql://user:password@host:port/db`` (``postgres://``; libpq's options, such as
    ``sslmode``, in the query), deleting finished jobs ``retention`` seconds after they ended
    (0: never). A Redis store's keys go under ``namespace`` unless the URL gives ``?namespace=``."""
    if url.startswith("sqlite://"):
        from server.jobstore.sqlite import SQLiteJobStore

        return SQLiteJobStore.from_url(url, retention)
    if url.startswith(("redis://", "rediss://")):
        from server.jobstore.redis import RedisJobStore

        return RedisJobStore.from_url(url, namespace, ca_file=ca_file, retention=retention)
    if url.startswith(("postgresql://", "postgres://")):
        from server.jobstore.postgres import PostgresJobStore

        return PostgresJobStore.from_url(url, retention)
    raise ValueError(
        "MLGATE_STORE_URL must start with sqlite://, redis://, rediss://, postgresql:// or "
        "postgres://"
    )
