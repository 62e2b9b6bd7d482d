"""The job stores' error tree. Driver errors (sqlite3, redis, psycopg) are translated into these at
the boundary of each backend, so the gateway maps one tree, never a driver's exceptions. It lives
in the core so that ``mlgate.failures`` maps it without importing the server.

JobStoreError
├── JobStoreUnavailable   the store cannot be reached or written now (the gateway answers UNAVAILABLE)
├── JobExists             ``create`` found a job with that id (also mlgate's AlreadyExists)
└── SchemaMismatch        the database's schema is newer than this mlgate knows (it will not start)
"""

from __future__ import annotations

from mlgate.errors import AlreadyExists

__all__ = ["JobExists", "JobStoreError", "JobStoreUnavailable", "SchemaMismatch"]


class JobStoreError(Exception):
    """Root of the job stores' errors. The text is for the gateway's log, not for clients."""


class JobStoreUnavailable(JobStoreError):
    """The job store cannot be reached or written now; retrying later may succeed."""


class JobExists(AlreadyExists, JobStoreError):
    """``create`` was given a job whose id is taken; the stored job is left as it was. An
    AlreadyExists too, so a client is told ALREADY_EXISTS, not that the store failed."""


class SchemaMismatch(JobStoreError, ValueError):
    """The database was upgraded by a newer mlgate. A ValueError too: like a bad setting, it
    stops a gateway before it serves, with its one-line message."""
