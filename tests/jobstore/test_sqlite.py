"""What the SQLite job store adds to the contract: it opens databases written before job rows were
kept apart, finished jobs expired, models had owners and jobs had parents, and applies each to
what is there; listings read an index whatever their filters."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from mlgate.ids import new_job_id
from mlgate.v1 import jobs_pb2
from server.jobstore.sqlite import CHILDREN, OLDEST_QUEUED, SQLiteJobStore, listing
from tests.support.jobstores import queued_job, wait_until_swept

# The schema as released before retention, with a record that held its rows.
_OLD_SCHEMA = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind INTEGER NOT NULL,
    state INTEGER NOT NULL,
    create_ns INTEGER NOT NULL,
    record BLOB NOT NULL
);
CREATE INDEX jobs_by_age ON jobs (create_ns DESC, id DESC);
CREATE TABLE events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
"""


def _old_job(state: jobs_pb2.JobState.ValueType, updated_ns: int) -> jobs_pb2.Job:
    stamp = Timestamp()
    stamp.FromNanoseconds(updated_ns)
    job_id = new_job_id()
    job = jobs_pb2.Job(id=job_id, kind=jobs_pb2.JOB_KIND_PREDICT, state=state)
    job.create_time.CopyFrom(stamp)
    job.update_time.CopyFrom(stamp)
    job.predict.model_id = "mdl_" + "b" * 32
    job.predict.rows.add().update({"x": 1.0})
    job.last_event.CopyFrom(jobs_pb2.JobEvent(job_id=job_id, seq=2, state=state, time=stamp))
    return job


def test_an_old_database_opens_with_its_jobs_summarised_and_expired(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    day_ago = time.time_ns() - 24 * 3600 * 10**9
    ended = _old_job(jobs_pb2.JOB_STATE_SUCCEEDED, day_ago)
    queued = _old_job(jobs_pb2.JOB_STATE_QUEUED, day_ago)
    with sqlite3.connect(path) as db:
        db.executescript(_OLD_SCHEMA)
        for job in (ended, queued):
            db.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, ?, ?)",
                (job.id, job.kind, job.state, day_ago, job.SerializeToString()),
            )
            db.execute(
                "INSERT INTO events VALUES (?, ?, ?)",
                (job.id, 2, job.last_event.SerializeToString()),
            )
    db.close()

    store = SQLiteJobStore(path, retention=3600.0)
    try:
        assert store.get(queued.id) == queued  # rows held in the old record still read back
        listed, _ = store.list(kind=0, state=0, page_size=10, page_token="")
        assert all(j.truncated and j.row_count == 1 and not j.predict.rows for j in listed)

        # It ended a day ago, past an hour's retention: the next write that sweeps deletes it.
        wait_until_swept(store, ended.id, queued.id)
        assert store.events(ended.id, 0) == []
        assert store.get(queued.id) == queued
        # The index the oldest waiting job is read from is added to the old database too.
        assert store.oldest_queued(jobs_pb2.JOB_KIND_PREDICT) == queued.create_time
        plan = _plan(path, OLDEST_QUEUED, (jobs_pb2.JOB_KIND_PREDICT, jobs_pb2.JOB_STATE_QUEUED))
        assert "USING COVERING INDEX jobs_by_kind_state (kind=? AND state=?)" in plan, plan
    finally:
        store.close()


def _plan(path: Path, query: str, args: tuple[object, ...]) -> str:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return "\n".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {query}", args))


# The registry's tables as released before owners and the model index.
_OLD_REGISTRY = """
CREATE TABLE model_names (name TEXT PRIMARY KEY, last_version INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE model_entries (
    model_id TEXT PRIMARY KEY,
    name TEXT,
    version INTEGER,
    description TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '{}'
) WITHOUT ROWID;
INSERT INTO model_names VALUES ('forest', 1);
INSERT INTO model_entries VALUES ('mdl_%s', 'forest', 1, 'kept', '{}');
"""


def test_an_old_registry_opens_ownerless_and_its_models_are_adopted(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    model_id = "mdl_" + "a" * 32
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(_OLD_REGISTRY % ("a" * 32))
    store = SQLiteJobStore(path)
    try:
        assert store.registry.claim_name("forest", "bob") == "", "made before owners: nobody's"
        assert store.registry.page(10, None) == [], "not in the index until adopted"
        store.registry.adopt([(model_id, 1000)])
        (entry,) = store.registry.page(10, None)
        assert (entry.name, entry.version, entry.description) == ("forest", 1, "kept")
        assert (entry.owner, entry.created_ns) == ("", 1000)
        plan = _plan(
            path,
            "SELECT model_id FROM model_entries WHERE created_ns IS NOT NULL "
            "ORDER BY created_ns DESC, model_id DESC LIMIT 1",
            (),
        )
        assert "model_entries_by_age" in plan, plan
    finally:
        store.close()


# The jobs table as released before child jobs: retention and the outbox, no parents.
_BEFORE_CHILDREN = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind INTEGER NOT NULL,
    state INTEGER NOT NULL,
    create_ns INTEGER NOT NULL,
    record BLOB NOT NULL,
    end_ns INTEGER,
    unpublished_ns INTEGER
);
CREATE INDEX jobs_by_age ON jobs (create_ns DESC, id DESC);
"""


def test_a_database_from_before_child_jobs_gains_parents_and_their_indexes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    old = queued_job(created_ns=1_700_000_000_000_000_000)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.executescript(_BEFORE_CHILDREN)
        db.execute(
            "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, NULL, NULL)",
            (old.id, old.kind, old.state, 1_700_000_000_000_000_000, old.SerializeToString()),
        )
    store = SQLiteJobStore(path)
    try:
        (listed,), _ = store.list(kind=0, state=0, page_size=10, page_token="")
        assert listed.id == old.id
        trial = queued_job()
        trial.kind = jobs_pb2.JOB_KIND_TRIAL
        trial.parent_job_id = old.id
        store.create(trial)
        assert [j.id for j in store.children(old.id)] == [trial.id]
        assert [j.id for j in store.list(kind=0, state=0, page_size=10, page_token="")[0]] == [
            old.id
        ]
    finally:
        store.close()
    # Opening it again finds the column there and adds nothing.
    SQLiteJobStore(path).close()

    parent = "job_" + "0" * 32
    after = (1_700_000_000_000_000_000, "job_" + "f" * 32)
    plans = {
        (kind, state, cursor, by): _plan(path, query, (*args, 51))
        for kind in (0, jobs_pb2.JOB_KIND_TRIAL)
        for state in (0, jobs_pb2.JOB_STATE_QUEUED)
        for cursor in (None, after)
        for by in ("", parent)
        for query, args in [listing(kind, state, cursor, by)]
    }
    for (kind, state, _cursor, by), plan in plans.items():
        where = f"{kind=} {state=} {by=}: {plan}"
        assert "SCAN jobs" not in plan or "USING INDEX" in plan, where
        if by:
            assert "USING INDEX jobs_by_parent (parent_job_id=?" in plan, where
        elif not kind:
            expected = "jobs_listed_by_state (state=?" if state else "jobs_listed_by_age"
            assert expected in plan, where
            assert "TEMP B-TREE" not in plan, "read in the index's order, not sorted: " + where
    children = _plan(path, CHILDREN, (parent,))
    assert "USING INDEX jobs_by_parent (parent_job_id=?)" in children, children
