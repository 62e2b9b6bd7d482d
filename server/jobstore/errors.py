"""The job stores' error tree. Driver errors (sqlite3, redis) are translated into these at the
boundary of each backend, so the gateway maps one tree, never a driver's exceptions.

JobStoreError
└── JobStoreUnavailable   the store cannot be reached or written now (the gateway answers UNAVAILABLE)
"""

from __future__ import annotations

__all__ = ["JobStoreError", "JobStoreUnavailable"]


class JobStoreError(Exception):
    """Root of the job stores' errors. The text is for the gateway's log, not for clients."""


class JobStoreUnavailable(JobStoreError):
    """The job store cannot be reached or written now; retrying later may succeed."""
