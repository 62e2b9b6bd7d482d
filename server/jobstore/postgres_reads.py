"""The PostgreSQL job store's listing statements, each held to an index by a test
(tests/jobstore/test_postgres.py reads their plans past 100,000 jobs)."""

from __future__ import annotations

from server.jobstore import sql_listing
from server.jobstore.sql_listing import LISTED

__all__ = ["CHILDREN", "LISTED", "listing"]

# The parent's index read forwards (it is kept newest first, as listings page).
CHILDREN = """
SELECT record, body FROM jobs LEFT JOIN job_rows ON job_rows.job_id = jobs.id
WHERE parent_job_id = %s ORDER BY create_ns, id
"""


def listing(
    kind: int, state: int, after: tuple[int, str] | None, parent_job_id: str = ""
) -> tuple[str, list[object]]:
    """ListJobs' statement and its parameters before the page size: newest first, from the
    index that matches the filters (``jobs_by_parent`` for a parent's children,
    ``jobs_by_kind_state`` and the like for a kind, ``jobs_listed_by_age`` or
    ``jobs_listed_by_state``, which hold no TRIAL or SHARD jobs, for neither)."""
    return sql_listing.listing(kind, state, after, parent_job_id, "%s", _before)


def _before(after: tuple[int, str]) -> tuple[str, list[object]]:
    return "(create_ns, id) < (%s, %s)", list(after)
