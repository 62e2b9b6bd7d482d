"""The job stores' error tree. Driver errors (sqlite3, redis, psycopg) are translated into these at
the boundary of each backend, so the gateway maps one tree, never a driver's exceptions.

JobStoreError
├── JobStoreUnavailable   the store cannot be reached or written now (the gateway answers UNAVAILABLE)
└── SchemaMismatch        the database's schema is newer than this mlgate knows (it will not start)
"""

from __future__ import annotations

__all__ = ["JobStoreError", "JobStoreUnavailable", "SchemaMismatch"]


class JobStoreError(Exception):
    """Root of the job stores' errors. The text is for the gateway's log, not for clients."""


class JobStoreUnavailable(JobStoreError):
    """The job store cannot be reached or written now; retrying later may succeed."""


class SchemaMismatch(JobStoreError, ValueError):
    """The database was upgraded by a newer mlgate. A ValueError too: like a bad setting, it
    stops a gateway before it serves, with its one-line message."""
