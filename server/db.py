"""``mlgate db upgrade``: the job store's schema brought to this mlgate's version ahead of a
rollout, so that the new gateways start on a schema that is ready (they would apply it
themselves otherwise, under the same advisory lock). Only PostgreSQL's schema is versioned: the
SQLite and Redis stores keep their own."""

from __future__ import annotations

from pathlib import Path

from mlgate.store_errors import JobStoreUnavailable
from server.error_mapping import Backends
from server.settings import GatewaySettings

__all__ = ["upgrade_job_store"]


def upgrade_job_store(data_dir: Path | None = None) -> str:
    """Apply the pending migrations of the job store ``MLGATE_STORE_URL`` names; one line saying
    what was done. Raises ConnectionError (an OSError) if the database cannot be reached, and
    SchemaMismatch (a ValueError) if a newer mlgate upgraded it."""
    settings = GatewaySettings.from_env(data_dir=data_dir)
    kind = Backends.of(settings.broker.kind, settings.storage_url, settings.store_url).job_store
    if kind != "postgresql":
        return f"the {kind} job store keeps its own schema: nothing to upgrade"
    # Imported here: psycopg is only needed where the store is PostgreSQL.
    from server.jobstore.postgres_link import PostgresLink

    link = PostgresLink(settings.store_url)
    try:
        done = link.upgrade()
    except JobStoreUnavailable as exc:
        raise ConnectionError(str(exc)) from None
    finally:
        link.close()
    where = f"the job store (PostgreSQL at {link.where})"
    if not done.applied:
        return f"{where} is at schema version {done.after}: nothing to apply"
    applied = ", ".join(done.applied)
    return f"{where} went from schema version {done.before} to {done.after}: applied {applied}"
