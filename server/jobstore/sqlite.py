"""The SQLite job store: the default for a single gateway, kept under the data directory.

Tables: ``jobs`` (the records, without prediction rows; ``end_ns`` set once a job has ended,
``unpublished_ns`` from its creation until it is known to be published, ``parent_job_id`` for a
TRIAL or SHARD job), ``job_rows`` (each prediction's rows, written once) and ``events`` (every
job's event log). Databases written by earlier versions gain the newer columns and indexes in
place when a store opens them.
"""

from __future__ import annotations

import builtins
import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from mlgate.events import TERMINAL_STATES, is_terminal
from mlgate.store_errors import JobStoreError, JobStoreUnavailable
from mlgate.v1 import jobs_pb2
from server.jobstore import sql_listing
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
from server.jobstore.records import split_rows, summary, with_rows
from server.jobstore.sql_listing import LISTED
from server.jobstore.sqlite_registry import SCHEMA as REGISTRY_SCHEMA
from server.jobstore.sqlite_registry import SQLiteModelRegistry
from server.paging import decode_page_token, encode_page_token

__all__ = ["CHILDREN", "OLDEST_QUEUED", "SQLiteJobStore", "listing"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind INTEGER NOT NULL,
    state INTEGER NOT NULL,
    create_ns INTEGER NOT NULL,
    record BLOB NOT NULL,
    end_ns INTEGER,
    unpublished_ns INTEGER,
    parent_job_id TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_age ON jobs (create_ns DESC, id DESC);
CREATE TABLE IF NOT EXISTS job_rows (
    job_id TEXT PRIMARY KEY,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
"""
# min() over the (kind, state, create_ns) index is one seek to its first entry.
OLDEST_QUEUED = "SELECT min(create_ns) FROM jobs WHERE kind = ? AND state = ?"
# LISTED is written in, not parameters: SQLite uses a partial index only for a query whose WHERE
# holds the index's own condition as written.
_CHILD_INDEXES = f"""
CREATE INDEX IF NOT EXISTS jobs_by_parent ON jobs (parent_job_id, create_ns, id)
    WHERE parent_job_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_listed_by_age ON jobs (create_ns DESC, id DESC) WHERE {LISTED};
CREATE INDEX IF NOT EXISTS jobs_listed_by_state ON jobs (state, create_ns DESC, id DESC)
    WHERE {LISTED};
"""
_WHOLE = "SELECT record, body FROM jobs LEFT JOIN job_rows ON job_rows.job_id = jobs.id"
CHILDREN = f"{_WHOLE} WHERE parent_job_id = ? ORDER BY create_ns, id"
_SWEEP_BATCH = 500
_SWEEP_MAX_BATCHES = 20


class SQLiteJobStore(JobStore):
    """One connection guarded by a lock: SQLite serialises writers anyway, and a single
    connection avoids per-call setup on the hot path."""

    def __init__(self, path: Path, *, retention: float = DEFAULT_RETENTION) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._sweeps = SweepSchedule(retention)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL under WAL survives a process crash; only an OS crash can lose the last commits.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.executescript(REGISTRY_SCHEMA)
        self._registry = SQLiteModelRegistry(self._db, self._locked, self._transaction)
        self._add_end_times()
        self._db.execute("CREATE INDEX IF NOT EXISTS jobs_by_end ON jobs (end_ns)")
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS jobs_by_kind_state ON jobs (kind, state, create_ns)"
        )
        self._add_outbox()
        self._add_parents()

    @classmethod
    def from_url(cls, url: str, retention: float = DEFAULT_RETENTION) -> SQLiteJobStore:
        """``sqlite:///absolute/path.db`` or ``sqlite://relative/path.db``."""
        return cls(Path(url.removeprefix("sqlite://")), retention=retention)

    def _add_end_times(self) -> None:
        """Databases written before retention existed get ``end_ns``: their jobs' last update."""
        with self._transaction():
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
            if "end_ns" in columns:
                return
            self._db.execute("ALTER TABLE jobs ADD COLUMN end_ns INTEGER")
            marks = ",".join("?" * len(TERMINAL_STATES))
            ended = self._db.execute(
                f"SELECT id, record FROM jobs WHERE state IN ({marks})", tuple(TERMINAL_STATES)
            ).fetchall()
            self._db.executemany(
                "UPDATE jobs SET end_ns = ? WHERE id = ?",
                [(jobs_pb2.Job.FromString(r).update_time.ToNanoseconds(), i) for i, r in ended],
            )

    def _add_outbox(self) -> None:
        """Databases written before the outbox get its column, unset: their jobs are history."""
        with self._transaction():
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
            if "unpublished_ns" not in columns:
                self._db.execute("ALTER TABLE jobs ADD COLUMN unpublished_ns INTEGER")
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS jobs_unpublished ON jobs (unpublished_ns)"
                " WHERE unpublished_ns IS NOT NULL"
            )

    def _add_parents(self) -> None:
        """Databases written before child jobs get ``parent_job_id``, unset: none of their jobs
        has a parent (TRIAL and SHARD jobs came with it)."""
        with self._transaction():
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
            if "parent_job_id" not in columns:
                self._db.execute("ALTER TABLE jobs ADD COLUMN parent_job_id TEXT")
            for statement in _CHILD_INDEXES.split(";"):
                if statement.strip():
                    self._db.execute(statement)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The connection, under the lock, with sqlite3's errors translated at this one boundary."""
        with self._lock:
            try:
                yield
            except sqlite3.IntegrityError as exc:
                raise JobStoreError(f"the SQLite job store refused a write: {exc}") from exc
            except sqlite3.Error as exc:
                # Locked, read-only, disk full or I/O errors, a closed connection: all transient
                # or the operator's to fix, and none of them the caller's request.
                raise JobStoreUnavailable(f"the SQLite job store failed: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction, under the lock; rolled back if the body raises."""
        with self._locked():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def create_if_absent(self, job: jobs_pb2.Job) -> bool:
        record, rows = split_rows(job)
        with self._transaction():
            created = self._db.execute(
                "INSERT INTO jobs (id, kind, state, create_ns, record, end_ns, unpublished_ns,"
                " parent_job_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (
                    job.id,
                    job.kind,
                    job.state,
                    job.create_time.ToNanoseconds(),
                    record.SerializeToString(),
                    _end_ns(job),
                    time.time_ns(),
                    job.parent_job_id or None,
                ),
            ).rowcount
            if not created:
                return False
            if rows:
                self._db.execute(
                    "INSERT INTO job_rows (job_id, body) VALUES (?, ?)", (job.id, rows)
                )
            self._insert_event(job.last_event)
        return True

    def _insert_event(self, event: jobs_pb2.JobEvent) -> None:
        self._db.execute(
            "INSERT OR IGNORE INTO events (job_id, seq, body) VALUES (?, ?, ?)",
            (event.job_id, event.seq, event.SerializeToString()),
        )

    def _load(self, job_id: str) -> jobs_pb2.Job | None:
        row = self._db.execute("SELECT record FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else jobs_pb2.Job.FromString(row[0])

    def _save(self, job: jobs_pb2.Job) -> None:
        self._db.execute(
            "UPDATE jobs SET state = ?, record = ?, end_ns = ?, unpublished_ns = NULL WHERE id = ?",
            (job.state, job.SerializeToString(), _end_ns(job), job.id),
        )

    def get(self, job_id: str) -> jobs_pb2.Job | None:
        with self._locked():
            row = self._db.execute(f"{_WHOLE} WHERE jobs.id = ?", (job_id,)).fetchone()
        return None if row is None else with_rows(jobs_pb2.Job.FromString(row[0]), row[1])

    def children(self, parent_job_id: str) -> builtins.list[jobs_pb2.Job]:
        with self._locked():
            rows = self._db.execute(CHILDREN, (parent_job_id,)).fetchall()
        return [with_rows(jobs_pb2.Job.FromString(record), body) for record, body in rows]

    def list(
        self, *, kind: int, state: int, page_size: int, page_token: str, parent_job_id: str = ""
    ) -> tuple[builtins.list[jobs_pb2.Job], str]:
        after = decode_page_token(page_token) if page_token else None
        sql, args = listing(kind, state, after, parent_job_id)
        with self._locked():
            rows = self._db.execute(sql, [*args, page_size + 1]).fetchall()
        jobs = [summary(jobs_pb2.Job.FromString(row[0])) for row in rows[:page_size]]
        token = ""
        if len(rows) > page_size:
            last = jobs[-1]
            token = encode_page_token(last.create_time.ToNanoseconds(), last.id)
        return jobs, token

    @property
    def registry(self) -> SQLiteModelRegistry:
        return self._registry

    def record(self, event: jobs_pb2.JobEvent) -> Recorded | None:
        return self.record_all([event])[0]

    def record_all(self, events: Sequence[jobs_pb2.JobEvent]) -> builtins.list[Recorded | None]:
        with self._transaction():
            done = [self._apply(event) for event in events]
        self._sweeps.run_if_due(self._sweep, (JobStoreError,))
        return done

    def _apply(self, event: jobs_pb2.JobEvent) -> Recorded | None:
        """Record ``event`` in the transaction under way."""
        job = self._load(event.job_id)
        if job is None:
            return None
        after = job.last_event.seq
        if not apply_event(job, event):
            return None
        # The version is allocated in the transaction that ends the job, so exactly once.
        self._registry.register_in_transaction(job)
        self._save(job)
        self._insert_event(job.last_event)
        return recorded(job, after)

    def events(self, job_id: str, after_seq: int) -> builtins.list[jobs_pb2.JobEvent]:
        with self._locked():
            rows = self._db.execute(
                "SELECT body FROM events WHERE job_id = ? AND seq > ? ORDER BY seq",
                (job_id, after_seq),
            ).fetchall()
        return [jobs_pb2.JobEvent.FromString(row[0]) for row in rows]

    def cancel(self, job_id: str, event: jobs_pb2.JobEvent) -> jobs_pb2.Job | None:
        with self._transaction():
            job = self._load(job_id)
            if job is None:
                return None
            number_cancel(job, event)
            if apply_event(job, event):
                self._save(job)
                self._insert_event(event)
        self._sweeps.run_if_due(self._sweep, (JobStoreError,))
        return summary(job)

    def _sweep(self) -> None:
        """Delete jobs that ended more than ``retention`` seconds ago, with their rows and events,
        in batches that hold the lock briefly."""
        cutoff = time.time_ns() - int(self._sweeps.retention * 1e9)
        for _ in range(_SWEEP_MAX_BATCHES):
            with self._transaction():
                due = self._db.execute(
                    "SELECT id FROM jobs WHERE end_ns < ? LIMIT ?", (cutoff, _SWEEP_BATCH)
                ).fetchall()
                for table, column in (("jobs", "id"), ("job_rows", "job_id"), ("events", "job_id")):
                    self._db.executemany(f"DELETE FROM {table} WHERE {column} = ?", due)
            if len(due) < _SWEEP_BATCH:
                return

    def mark_published(self, job_ids: Sequence[str]) -> None:
        with self._transaction():
            for start in range(0, len(job_ids), 500):
                batch = list(job_ids[start : start + 500])
                marks = ",".join("?" * len(batch))
                self._db.execute(
                    f"UPDATE jobs SET unpublished_ns = NULL WHERE id IN ({marks})"
                    " AND unpublished_ns IS NOT NULL",
                    batch,
                )

    def claim_unpublished(
        self, older_than_seconds: float, limit: int
    ) -> builtins.list[jobs_pb2.Job]:
        now = time.time_ns()
        with self._transaction():
            # One writer at a time (BEGIN IMMEDIATE): another process's claim waits for this one.
            claimed = self._db.execute(
                "UPDATE jobs SET unpublished_ns = ? WHERE id IN (SELECT id FROM jobs"
                " WHERE unpublished_ns <= ? ORDER BY unpublished_ns LIMIT ?) RETURNING id",
                (now, now - int(older_than_seconds * 1e9), limit),
            ).fetchall()
            rows = self._db.execute(
                f"{_WHOLE} WHERE jobs.id IN ({','.join('?' * len(claimed))})",
                [job_id for (job_id,) in claimed],
            ).fetchall()
        return [with_rows(jobs_pb2.Job.FromString(record), body) for record, body in rows]

    def oldest_queued(self, kind: int) -> Timestamp | None:
        with self._locked():
            row = self._db.execute(OLDEST_QUEUED, (kind, jobs_pb2.JOB_STATE_QUEUED)).fetchone()
        return timestamp(row[0])

    def ping(self) -> None:
        with self._lock:
            self._db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def listing(
    kind: int, state: int, after: tuple[int, str] | None, parent_job_id: str = ""
) -> tuple[str, builtins.list[object]]:
    """ListJobs' statement and its parameters before the page size: newest first, from the
    index that matches the filters (``jobs_by_parent`` for a parent's children,
    ``jobs_listed_by_age`` or ``jobs_listed_by_state``, which hold no TRIAL or SHARD jobs, when
    there is no kind)."""
    return sql_listing.listing(kind, state, after, parent_job_id, "?", _before)


def _before(after: tuple[int, str]) -> tuple[str, builtins.list[object]]:
    return "(create_ns < ? OR (create_ns = ? AND id < ?))", [after[0], after[0], after[1]]


def _end_ns(job: jobs_pb2.Job) -> int | None:
    # The store's clock, not the event's: retention must not depend on a worker's clock.
    return time.time_ns() if is_terminal(job.state) else None
