"""Events recorded together in the PostgreSQL job store: one statement for a batch.

A round trip costs a gateway more than the server's time: the thread that waits for the answer
gives up Python's lock and, on a busy gateway, waits again for it afterwards. So a batch of
events (``PostgresJobStore.record_all``) is applied in Python to the records the store wrote
lately (the others read in one statement) and saved in one statement: every job's record
compared on its ``rev`` and set, and every event that moved a job forward added to its log, in
one transaction. A job some other writer changed meanwhile (another gateway recording the same
event) is not saved: such jobs are read again, together, and tried again. The events of a job
that registers a model version go the one-by-one path, which takes a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mlgate.events import is_terminal
from mlgate.v1 import jobs_pb2
from server.jobstore.base import Recorded, apply_event, recorded
from server.jobstore.postgres_link import Connection

__all__ = ["Batch", "write_batch"]

_LOAD_ALL = "SELECT id, record, rev FROM jobs WHERE id = ANY(%s)"
# Matches nothing for a job another writer changed since it was read (``rev``), and logs
# nothing for it. An event whose seq is recorded already only raised the attempt: the record
# changes, the log does not. The rows are locked in id order (``locked``: the update reaches a
# row only through it) whatever order the update's plan takes them in, as every statement that
# updates several jobs does (``mark_published`` too): two of them never wait on each other.
_SAVE_ALL = """
WITH saves AS (
    SELECT * FROM unnest(%(ids)s::text[], %(states)s::integer[], %(records)s::bytea[],
                         %(ended)s::boolean[], %(revs)s::bigint[])
        AS s(id, state, record, ended, rev)
), locked AS MATERIALIZED (
    SELECT jobs.id FROM jobs JOIN saves ON jobs.id = saves.id AND jobs.rev = saves.rev
    ORDER BY jobs.id FOR UPDATE OF jobs
), saved AS (
    UPDATE jobs SET state = saves.state, record = saves.record, rev = jobs.rev + 1,
        end_at = CASE WHEN saves.ended THEN now() END, unpublished_at = NULL
    FROM saves JOIN locked ON locked.id = saves.id
    WHERE jobs.id = saves.id AND jobs.rev = saves.rev
    RETURNING jobs.id
), logged AS (
    INSERT INTO events (job_id, seq, body)
    SELECT e.job_id, e.seq, e.body
    FROM unnest(%(event_jobs)s::text[], %(seqs)s::bigint[], %(bodies)s::bytea[])
        AS e(job_id, seq, body)
    WHERE e.job_id IN (SELECT id FROM saved)
    ON CONFLICT DO NOTHING
)
SELECT id FROM saved
"""

# Tries at the jobs another writer changed under a batch, before it leaves them to the one-by-one
# path: each try reads them again, together.
_ROUNDS = 3

Known = Callable[[str], tuple[bytes, int] | None]


@dataclass
class Batch:
    """What a batch did: each event's ``Recorded`` (None: not applied, or left ``later``), the
    records saved with their new ``rev``, and the indexes of the events left to the one-by-one
    path, in order."""

    results: list[Recorded | None]
    saved: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    later: list[int] = field(default_factory=list)


@dataclass
class _Job:
    """One job's part of a batch, once its events are applied: the record to save and what
    each applied event did (its index in the batch and its ``Recorded``, the last one's made
    once the record is saved)."""

    job: jobs_pb2.Job
    rev: int
    indexes: list[int]
    done: list[tuple[int, Recorded]] = field(default_factory=list)
    last: tuple[int, int] | None = None  # the last applied event's index, and its after_seq
    logs: list[tuple[int, bytes]] = field(default_factory=list)  # (seq, event) to add to the log
    stored: bytes = b""  # the record to save


def write_batch(
    conn: Connection,
    events: Sequence[jobs_pb2.JobEvent],
    known: Known,
    wants_version: Callable[[jobs_pb2.Job], bool],
) -> Batch:
    """Apply ``events`` (in order, per job) to the records ``known`` gives or the table holds,
    and save them in one statement; the jobs another writer changed meanwhile are read again
    (together) and tried again, a few times."""
    batch = Batch([None] * len(events))
    by_job: dict[str, list[int]] = {}
    for i, event in enumerate(events):
        by_job.setdefault(event.job_id, []).append(i)
    records = {job_id: known(job_id) for job_id in by_job}
    for _ in range(_ROUNDS):
        if not records:
            break
        missing = [job_id for job_id, record in records.items() if record is None]
        if missing:
            for job_id, record, rev in conn.execute(_LOAD_ALL, (missing,), binary=True):
                records[job_id] = (record, int(rev))
        records = _save(conn, events, by_job, records, wants_version, batch)
    for job_id in records:  # still changing under us: one by one
        batch.later += by_job[job_id]
    batch.later.sort()
    return batch


def _save(
    conn: Connection,
    events: Sequence[jobs_pb2.JobEvent],
    by_job: dict[str, list[int]],
    records: dict[str, tuple[bytes, int] | None],
    wants_version: Callable[[jobs_pb2.Job], bool],
    batch: Batch,
) -> dict[str, tuple[bytes, int] | None]:
    """One try at the jobs of ``records``: those another writer changed meanwhile, to read
    again."""
    jobs: dict[str, _Job] = {}
    params: dict[str, list[object]] = {
        name: [] for name in ("ids", "states", "records", "ended", "revs")
    }
    params.update(event_jobs=[], seqs=[], bodies=[])
    for job_id in sorted(records):
        found = records[job_id]
        if found is None:
            continue  # unknown or deleted: nothing to apply
        part = _Job(jobs_pb2.Job.FromString(found[0]), found[1], by_job[job_id])
        if not _apply(part, events, wants_version):
            batch.later += part.indexes
            continue
        if part.last is None:
            continue  # nothing moved the job forward
        part.stored = part.job.SerializeToString()
        for name, value in (
            ("ids", job_id),
            ("states", part.job.state),
            ("records", part.stored),
            ("ended", is_terminal(part.job.state)),
            ("revs", part.rev),
        ):
            params[name].append(value)
        for seq, body in part.logs:
            params["event_jobs"].append(job_id)
            params["seqs"].append(seq)
            params["bodies"].append(body)
        jobs[job_id] = part
    if not jobs:
        return {}
    for (job_id,) in conn.execute(_SAVE_ALL, params).fetchall():
        part = jobs.pop(job_id)
        assert part.last is not None
        batch.saved[job_id] = (part.stored, part.rev + 1)
        for i, result in [*part.done, (part.last[0], recorded(part.job, part.last[1]))]:
            batch.results[i] = result
    return dict.fromkeys(jobs)


def _apply(
    part: _Job,
    events: Sequence[jobs_pb2.JobEvent],
    wants_version: Callable[[jobs_pb2.Job], bool],
) -> bool:
    """Apply the job's events to its record in order; False if one registers a model version
    (the one-by-one path's to record)."""
    job = part.job
    for i in part.indexes:
        # A second event that moves the job on: the first one's Recorded is the record as it
        # stands now, kept apart.
        before = None
        if part.last is not None:
            before = jobs_pb2.Job()
            before.CopyFrom(job)
        after = job.last_event.seq
        if not apply_event(job, events[i]):
            continue
        if wants_version(job):
            return False
        if part.last is not None and before is not None:
            part.done.append((part.last[0], recorded(before, part.last[1])))
        part.last = (i, after)
        if job.last_event.seq != after:
            part.logs.append((job.last_event.seq, job.last_event.SerializeToString()))
    return True
