"""The Redis job store's keys and index members (the key layout is in ``server.jobstore.redis``).

A job is in its kind's indexes and, unless it is a TRIAL or SHARD job (``CHILD_KINDS``), in the
indexes of all jobs and of its state, which listings without a kind read: a search's trials
never pass through a user's listing. A child is in its parent's index too.
"""

from __future__ import annotations

from mlgate.v1 import jobs_pb2
from server.jobstore.base import CHILD_KINDS

__all__ = ["Keys", "expiry_entry", "member", "parse_expiry_entry"]


def member(job: jobs_pb2.Job) -> str:
    """The job's member of every index: ``{create_ns:020d}:{id}``."""
    return f"{job.create_time.ToNanoseconds():020d}:{job.id}"


def expiry_entry(job: jobs_pb2.Job) -> str:
    """The job's member of the expiry set: what its sweep needs to find its index entries
    without reading its record (``kind:state:member``, then ``:parent`` for a child)."""
    entry = f"{job.kind}:{job.state}:{member(job)}"
    return f"{entry}:{job.parent_job_id}" if job.parent_job_id else entry


def parse_expiry_entry(entry: str) -> tuple[int, int, str, str]:
    """Kind, state, index member and parent id (empty if none) of an expiry entry; entries
    written before child jobs have no parent part."""
    kind, state, created, job_id, *parent = entry.split(":")
    return int(kind), int(state), f"{created}:{job_id}", "".join(parent)


class Keys:
    def __init__(self, namespace: str) -> None:
        if not namespace or any(c in namespace for c in " *?[]{}"):
            raise ValueError(f"invalid Redis namespace {namespace!r}")
        self.ns = namespace
        self.expiry = f"{namespace}:jobs:expiry"
        self.unpublished = f"{namespace}:jobs:unpublished"

    def job(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}"

    def events(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}:events"

    def rows(self, job_id: str) -> str:
        return f"{self.ns}:job:{job_id}:rows"

    def index(self, kind: int = 0, state: int = 0) -> str:
        key = f"{self.ns}:jobs"
        if kind:
            key += f":kind:{kind}"
        if state:
            key += f":state:{state}"
        return key

    def children(self, parent_job_id: str) -> str:
        return f"{self.ns}:jobs:parent:{parent_job_id}"

    def indexes(self, kind: int, state: int, parent_job_id: str = "") -> list[str]:
        """Every index a job of this kind in this state (and of this parent) belongs to."""
        keys = [self.index(kind=kind), self.index(kind, state)]
        if kind not in CHILD_KINDS:
            keys += [self.index(), self.index(state=state)]
        if parent_job_id:
            keys.append(self.children(parent_job_id))
        return keys

    def moved(self, kind: int, before: int, after: int) -> tuple[list[str], list[str]]:
        """The indexes a job of ``kind`` leaves and joins as its state goes from ``before`` to
        ``after`` (its kind's and its parent's stay)."""
        leaves = [self.index(kind, before)]
        joins = [self.index(kind, after)]
        if kind not in CHILD_KINDS:
            leaves.append(self.index(state=before))
            joins.append(self.index(state=after))
        return leaves, joins
