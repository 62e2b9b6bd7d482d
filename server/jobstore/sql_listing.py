"""ListJobs' statement as the SQL job stores write it (SQLite and PostgreSQL differ only in their
parameter mark and in how they say "before this page's last job")."""

from __future__ import annotations

from collections.abc import Callable

from server.jobstore.base import CHILD_KINDS

__all__ = ["LISTED", "listing"]

# Written in, not a parameter: a partial index serves only a query whose condition implies the
# index's, which a prepared statement's generic plan cannot know of a parameter.
LISTED = f"kind NOT IN ({', '.join(map(str, CHILD_KINDS))})"


def listing(
    kind: int,
    state: int,
    after: tuple[int, str] | None,
    parent_job_id: str,
    mark: str,
    before: Callable[[tuple[int, str]], tuple[str, list[object]]],
) -> tuple[str, list[object]]:
    """The statement and its parameters before the page size, newest first: ``mark`` is the
    driver's parameter mark, ``before`` the condition (and its parameters) for the jobs older
    than ``after``, the last (create_ns, id) of the previous page."""
    where: list[str] = []
    args: list[object] = []
    if parent_job_id:
        where.append(f"parent_job_id = {mark}")
        args.append(parent_job_id)
    elif not kind:
        where.append(LISTED)
    if kind:
        where.append(f"kind = {mark}")
        args.append(kind)
    if state:
        where.append(f"state = {mark}")
        args.append(state)
    if after is not None:
        condition, values = before(after)
        where.append(condition)
        args += values
    sql = "SELECT record FROM jobs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + f" ORDER BY create_ns DESC, id DESC LIMIT {mark}", args
