"""The PostgreSQL job store's listing statements, each held to an index by a test
(tests/jobstore/test_postgres.py reads their plans past 100,000 jobs)."""

from __future__ import annotations

from server.jobstore.base import CHILD_KINDS

__all__ = ["CHILDREN", "LISTED", "listing"]

# Written in, not a parameter: a partial index serves only a query whose condition implies the
# index's, which a prepared statement's generic plan cannot know of a parameter.
LISTED = f"kind NOT IN ({', '.join(map(str, CHILD_KINDS))})"
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
    where: list[str] = []
    args: list[object] = []
    if parent_job_id:
        where.append("parent_job_id = %s")
        args.append(parent_job_id)
    elif not kind:
        where.append(LISTED)
    if kind:
        where.append("kind = %s")
        args.append(kind)
    if state:
        where.append("state = %s")
        args.append(state)
    if after is not None:
        where.append("(create_ns, id) < (%s, %s)")
        args += list(after)
    sql = "SELECT record FROM jobs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + " ORDER BY create_ns DESC, id DESC LIMIT %s", args
