"""The PostgreSQL job store: job records in the database teams already run and back up, shared by
every gateway on it (``MLGATE_STORE_URL=postgresql://USER:PASSWORD@HOST:PORT/DB``).

Tables (``migrations/``): ``jobs`` (the records, without prediction rows), ``job_rows`` (each
prediction's rows, written once), ``events`` (every job's event log, by seq) and the registry's.

Each operation is one statement, so one round trip, wherever it can be: ``create`` writes the
record, its rows and its first event in one statement of data-modifying CTEs. An update reads the
record (one statement), applies the event in Python (``apply_event``), and writes the record and
the event in one statement that compares and sets the record's ``rev``: a concurrent writer
(another gateway, a cancel) makes it match nothing, and the update starts again from the new
record. Events recorded together (``record_all``) are saved in one statement
(``postgres_batch``). Only the update that registers a model version takes a transaction of
several statements. Times (a job's end for retention, the outbox marks) are the database's
clock.
"""

from __future__ import annotations

import builtins
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import psycopg
from google.protobuf.timestamp_pb2 import Timestamp

from mlgate.events import is_terminal
from mlgate.store_errors import JobStoreError, JobStoreUnavailable
from mlgate.v1 import jobs_pb2
from server.jobstore.base import (
    DEFAULT_RETENTION,
    JobStore,
    Recorded,
    SweepSchedule,
    apply_event,
    number_cancel,
    recorded,
    timestamp,
)
from server.jobstore.postgres_batch import write_batch
from server.jobstore.postgres_link import Connection, PostgresLink
from server.jobstore.postgres_reads import CHILDREN, listing
from server.jobstore.postgres_registry import PostgresModelRegistry
from server.jobstore.records import split_rows, summary, with_rows
from server.paging import decode_page_token, encode_page_token

__all__ = ["OLDEST_QUEUED", "PostgresJobStore", "listing"]

# A job whose id is taken is left as it is: nothing inserted, and no row counted.
_CREATE = """
WITH job AS (
    INSERT INTO jobs (id, kind, state, create_ns, record, end_at, unpublished_at, parent_job_id)
    VALUES (%(id)s, %(kind)s, %(state)s, %(create_ns)s, %(record)s,
            CASE WHEN %(ended)s THEN now() END, now(), %(parent)s)
    ON CONFLICT (id) DO NOTHING RETURNING id
), rows AS (
    INSERT INTO job_rows (job_id, body) SELECT id, %(rows)s::bytea FROM job WHERE %(has_rows)s
), logged AS (
    INSERT INTO events (job_id, seq, body) SELECT id, %(seq)s, %(event)s FROM job
)
SELECT count(*) FROM job
"""
_GET = """
SELECT record, body FROM jobs LEFT JOIN job_rows ON job_rows.job_id = jobs.id WHERE jobs.id = %s
"""
_LOAD = "SELECT record, rev FROM jobs WHERE id = %s"
# Matches nothing if another writer changed the record since it was read (``rev``). An event
# whose seq is recorded already only raised the attempt: the record changes, the log does not.
_SAVE = """
WITH saved AS (
    UPDATE jobs SET state = %(state)s, record = %(record)s, rev = rev + 1,
        end_at = CASE WHEN %(ended)s THEN now() END, unpublished_at = NULL
    WHERE id = %(id)s AND rev = %(rev)s
    RETURNING id
), logged AS (
    INSERT INTO events (job_id, seq, body) SELECT id, %(seq)s, %(event)s FROM saved
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM saved
"""
# One end of ``jobs_by_kind_state``. The state is written in, not a parameter: a prepared
# statement's generic plan, knowing neither, took an index of the state alone and filtered on
# the kind (a scan of every waiting job of the other kind). A test holds the plan to the index.
OLDEST_QUEUED = (
    f"SELECT min(create_ns) FROM jobs WHERE kind = %s AND state = {jobs_pb2.JOB_STATE_QUEUED}"
)
_EVENTS = "SELECT body FROM events WHERE job_id = %s AND seq > %s ORDER BY seq"
# Locked rows are another gateway's sweep: skipped, not waited for.
_SWEEP = """
WITH due AS (
    SELECT id FROM jobs WHERE end_at < now() - make_interval(secs => %s)
    LIMIT %s FOR UPDATE SKIP LOCKED
), gone AS (
    DELETE FROM jobs USING due WHERE jobs.id = due.id RETURNING jobs.id
), rows AS (
    DELETE FROM job_rows WHERE job_id IN (SELECT id FROM gone)
), events AS (
    DELETE FROM events WHERE job_id IN (SELECT id FROM gone)
)
SELECT count(*) FROM gone
"""
# Rows locked in id order, as ``postgres_batch`` locks them: neither waits on the other for ever.
_MARK_PUBLISHED = """
WITH locked AS MATERIALIZED (
    SELECT id FROM jobs WHERE id = ANY(%s) AND unpublished_at IS NOT NULL ORDER BY id FOR UPDATE
)
UPDATE jobs SET unpublished_at = NULL FROM locked
WHERE jobs.id = locked.id AND jobs.unpublished_at IS NOT NULL
"""
# SKIP LOCKED: two gateways claiming at once take different jobs, neither waiting on the other.
_CLAIM = """
WITH due AS (
    SELECT id FROM jobs WHERE unpublished_at <= now() - make_interval(secs => %s)
    ORDER BY unpublished_at LIMIT %s FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE jobs SET unpublished_at = now() FROM due WHERE jobs.id = due.id
    RETURNING jobs.id, jobs.record
)
SELECT claimed.record, job_rows.body FROM claimed
LEFT JOIN job_rows ON job_rows.job_id = claimed.id
"""
_SWEEP_BATCH = 500
# Records this store wrote lately; far more than the jobs a gateway has in flight.
_RECENT = 10_000
_SWEEP_MAX_BATCHES = 20
_MAX_UPDATE_TRIES = 100


def _given(event: jobs_pb2.JobEvent) -> Callable[[jobs_pb2.Job], jobs_pb2.JobEvent]:
    """The event to apply, whatever the job is: a worker's event, numbered already."""
    return lambda _job: event


class _Recent:
    """The records this store wrote lately, each with its ``rev``. An event for one of them is
    applied to it and saved in one statement; if another writer changed the record meanwhile,
    the save's compare-and-set matches nothing and the update reads the record again. An event
    that does not move a remembered record forward does not move the stored one either (which
    can only be further on), so it is dropped without a round trip."""

    def __init__(self, size: int = _RECENT) -> None:
        self._size = size
        self._records: OrderedDict[str, tuple[bytes, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job_id: str) -> tuple[bytes, int] | None:
        with self._lock:
            return self._records.get(job_id)

    def put(self, job_id: str, record: bytes, rev: int) -> None:
        with self._lock:
            self._records[job_id] = (record, rev)
            self._records.move_to_end(job_id)
            if len(self._records) > self._size:
                self._records.popitem(last=False)

    def drop(self, job_id: str) -> None:
        with self._lock:
            self._records.pop(job_id, None)


class PostgresJobStore(JobStore):
    """Job records in PostgreSQL, on a pool of connections opened once."""

    def __init__(self, link: PostgresLink, *, retention: float = DEFAULT_RETENTION) -> None:
        self._link = link
        self._sweeps = SweepSchedule(retention)
        self._registry = PostgresModelRegistry(link)
        self._recent = _Recent()

    @classmethod
    def from_url(cls, url: str, retention: float = DEFAULT_RETENTION) -> PostgresJobStore:
        """``postgresql://USER:PASSWORD@HOST:PORT/DB[?sslmode=...&...]`` (or ``postgres://``):
        any libpq option goes in the query. The schema is migrated now if the server answers,
        else by the first call that finds it answering; raises SchemaMismatch for a database
        that a newer mlgate upgraded."""
        link = PostgresLink(url)
        try:
            link.open()
        except BaseException:
            link.close()
            raise
        return cls(link, retention=retention)

    def __repr__(self) -> str:
        return f"PostgresJobStore({self._link.where!r})"

    @property
    def registry(self) -> PostgresModelRegistry:
        return self._registry

    # -- writes ------------------------------------------------------------------------------

    def create_if_absent(self, job: jobs_pb2.Job) -> bool:
        record, rows = split_rows(job)
        stored = record.SerializeToString()
        params = {
            "id": job.id,
            "kind": job.kind,
            "state": job.state,
            "create_ns": job.create_time.ToNanoseconds(),
            "record": stored,
            "ended": is_terminal(job.state),
            "rows": rows,
            "has_rows": bool(rows),
            "seq": job.last_event.seq,
            "event": job.last_event.SerializeToString(),
            "parent": job.parent_job_id or None,
        }
        found = self._link.run(lambda conn: conn.execute(_CREATE, params).fetchone())
        if not found or not found[0]:
            return False
        self._recent.put(job.id, stored, 0)
        return True

    def record(self, event: jobs_pb2.JobEvent) -> Recorded | None:
        return self.record_all([event])[0]

    def record_all(self, events: Sequence[jobs_pb2.JobEvent]) -> builtins.list[Recorded | None]:
        """The batch in one statement (``postgres_batch``), then one by one the events of jobs
        it could not take."""
        if not events:
            return []
        batch = self._link.run(
            lambda conn: write_batch(conn, events, self._recent.get, self._registry.wants_version)
        )
        for job_id, (stored, rev) in batch.saved.items():
            self._recent.put(job_id, stored, rev)
        for i in batch.later:
            updated = self._link.run(functools.partial(self._record_alone, events[i]))
            batch.results[i] = None if updated is None else recorded(*updated)
        self._sweeps.run_if_due(self._sweep, (JobStoreError,))
        return batch.results

    def _record_alone(
        self, event: jobs_pb2.JobEvent, conn: Connection
    ) -> tuple[jobs_pb2.Job, int] | None:
        return self._update(conn, event.job_id, _given(event), self._recent.put)

    def cancel(self, job_id: str, event: jobs_pb2.JobEvent) -> jobs_pb2.Job | None:
        def numbered(job: jobs_pb2.Job) -> jobs_pb2.JobEvent:
            # A copy per try: numbering adds to the message, and a try may be repeated.
            return number_cancel(job, jobs_pb2.JobEvent.FromString(event.SerializeToString()))

        updated = self._link.run(
            lambda conn: self._update(conn, job_id, numbered, self._recent.put, keep_unchanged=True)
        )
        self._sweeps.run_if_due(self._sweep, (JobStoreError,))
        return None if updated is None else summary(updated[0])

    def _update(
        self,
        conn: Connection,
        job_id: str,
        make_event: Callable[[jobs_pb2.Job], jobs_pb2.JobEvent],
        remember: Callable[[str, bytes, int], None],
        known: tuple[bytes, int] | None = None,
        *,
        keep_unchanged: bool = False,
    ) -> tuple[jobs_pb2.Job, int] | None:
        """Apply an event to a job, starting from the ``known`` record if given; the whole job
        if it changed (or, with ``keep_unchanged``, if it exists at all), with the seq its log
        ended at before; the record saved goes to ``remember``. Starts again from the stored
        record if another writer got there first."""
        for _ in range(_MAX_UPDATE_TRIES):
            if known is None:
                row = conn.execute(_LOAD, (job_id,), binary=True).fetchone()
                if row is None:
                    self._recent.drop(job_id)
                    return None
                known = (row[0], int(row[1]))
            job, rev = jobs_pb2.Job.FromString(known[0]), known[1]
            after = job.last_event.seq
            if not apply_event(job, make_event(job)):
                return (job, after) if keep_unchanged else None
            stored = self._save(conn, job, rev)
            if stored is not None:
                remember(job_id, stored, rev + 1)
                return job, after
            known = None
        raise JobStoreUnavailable(f"PostgreSQL at {self._link.where}: job {job_id} kept changing")

    def _save(self, conn: Connection, job: jobs_pb2.Job, rev: int) -> bytes | None:
        """Write the updated record and its last event if the record is still at ``rev``; the
        record as stored, or None if it was not. A job that succeeded with a model name gets its
        version in the same transaction."""
        if self._registry.wants_version(job):
            with conn.transaction() as transaction:
                self._registry.register_in_transaction(conn, job)
                stored = self._write(conn, job, rev)
                if stored is not None:
                    return stored
                # The version allocated above is given back with the rest: numbers stay dense.
                raise psycopg.Rollback(transaction)
            return None
        return self._write(conn, job, rev)

    @staticmethod
    def _write(conn: Connection, job: jobs_pb2.Job, rev: int) -> bytes | None:
        stored = job.SerializeToString()
        params = {
            "id": job.id,
            "state": job.state,
            "record": stored,
            "ended": is_terminal(job.state),
            "rev": rev,
            "seq": job.last_event.seq,
            "event": job.last_event.SerializeToString(),
        }
        found = conn.execute(_SAVE, params).fetchone()
        return stored if found and found[0] else None

    def _sweep(self) -> None:
        """Delete jobs that ended more than ``retention`` seconds ago, with their rows and
        events, a batch per statement."""
        for _ in range(_SWEEP_MAX_BATCHES):
            found = self._link.run(
                lambda conn: conn.execute(_SWEEP, (self._sweeps.retention, _SWEEP_BATCH)).fetchone()
            )
            if not found or found[0] < _SWEEP_BATCH:
                return

    def mark_published(self, job_ids: Sequence[str]) -> None:
        if job_ids:
            self._link.run(lambda conn: conn.execute(_MARK_PUBLISHED, (list(job_ids),)))

    def claim_unpublished(
        self, older_than_seconds: float, limit: int
    ) -> builtins.list[jobs_pb2.Job]:
        rows = self._link.run(
            lambda conn: conn.execute(
                _CLAIM, (float(older_than_seconds), limit), binary=True
            ).fetchall()
        )
        return [with_rows(jobs_pb2.Job.FromString(record), body) for record, body in rows]

    # -- reads -------------------------------------------------------------------------------

    def get(self, job_id: str) -> jobs_pb2.Job | None:
        row = self._link.run(
            lambda conn: conn.execute(_GET, (job_id,), binary=True).fetchone(), retry=True
        )
        return None if row is None else with_rows(jobs_pb2.Job.FromString(row[0]), row[1])

    def children(self, parent_job_id: str) -> builtins.list[jobs_pb2.Job]:
        rows = self._link.run(
            lambda conn: conn.execute(CHILDREN, (parent_job_id,), binary=True).fetchall(),
            retry=True,
        )
        return [with_rows(jobs_pb2.Job.FromString(record), body) for record, body in rows]

    def list(
        self, *, kind: int, state: int, page_size: int, page_token: str, parent_job_id: str = ""
    ) -> tuple[builtins.list[jobs_pb2.Job], str]:
        after = decode_page_token(page_token) if page_token else None
        sql, args = listing(kind, state, after, parent_job_id)
        rows = self._link.run(
            lambda conn: conn.execute(sql, [*args, page_size + 1], binary=True).fetchall(),
            retry=True,
        )
        jobs = [summary(jobs_pb2.Job.FromString(row[0])) for row in rows[:page_size]]
        token = ""
        if len(rows) > page_size:
            last = jobs[-1]
            token = encode_page_token(last.create_time.ToNanoseconds(), last.id)
        return jobs, token

    def events(self, job_id: str, after_seq: int) -> builtins.list[jobs_pb2.JobEvent]:
        rows = self._link.run(
            lambda conn: conn.execute(_EVENTS, (job_id, after_seq), binary=True).fetchall(),
            retry=True,
        )
        return [jobs_pb2.JobEvent.FromString(row[0]) for row in rows]

    def oldest_queued(self, kind: int) -> Timestamp | None:
        row = self._link.run(
            lambda conn: conn.execute(OLDEST_QUEUED, (kind,)).fetchone(),
            retry=True,
        )
        return timestamp(row[0] if row else None)

    def ping(self) -> None:
        self._link.ping()

    def close(self) -> None:
        self._link.close()
