"""What the PostgreSQL job store adds to the contract: listings that stay indexed past 100,000 jobs,
a schema applied once by gateways starting together (or ahead of them by ``mlgate db upgrade``)
and refused when newer than the gateway, a password that appears nowhere, and gateways writing
the same jobs at once that never deadlock."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from mlgate.ids import new_job_id
from mlgate.store_errors import JobStoreUnavailable, SchemaMismatch
from mlgate.v1 import jobs_pb2
from server.jobstore import open_job_store
from server.jobstore.postgres import OLDEST_QUEUED, PostgresJobStore, listing
from server.jobstore.postgres_reads import CHILDREN
from server.jobstore.postgres_schema import LATEST_VERSION, migrations
from server.settings import GatewaySettings
from tests.support.fresh import free_port
from tests.support.jobstores import queued_job
from tests.support.postgres import fresh_schema
from tests.support.serving import clean_env, run_mlgate
from tests.support.waiting import wait_for

PASSWORD = "hunter2-Secret"

_JOBS = """
INSERT INTO jobs (id, kind, state, create_ns, record)
SELECT 'job_' || lpad(to_hex(g), 32, '0'), 1 + mod(g, 2),
       CASE mod(g, 100) WHEN 0 THEN 1 WHEN 1 THEN 2 WHEN 2 THEN 4 ELSE 3 END,
       1700000000000000000 + g::bigint * 1000, '\\x'::bytea
FROM generate_series(1, %s) AS g
"""
# A hundred trials for each of the first 300 jobs, newer than all of them (whatever kind those
# are: only the parent's id matters to the store).
_TRIALS = """
INSERT INTO jobs (id, kind, state, create_ns, record, parent_job_id)
SELECT 'job_' || lpad(to_hex(1000000 + g), 32, '0'), 5, CASE mod(g, 7) WHEN 0 THEN 1 ELSE 3 END,
       1800000000000000000 + g::bigint * 1000, '\\x'::bytea,
       'job_' || lpad(to_hex(1 + mod(g, 300)), 32, '0')
FROM generate_series(1, 30000) AS g
"""
PARENT = "job_" + "0" * 31 + "7"


@pytest.fixture
def schema_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


def _plan(conn: psycopg.Connection[Any], query: str, args: list[object]) -> str:
    rows = conn.execute(f"EXPLAIN {query}", args).fetchall()
    return "\n".join(row[0] for row in rows)


def _generic_plan(conn: psycopg.Connection[Any], query: str, args: list[object]) -> str:
    """The plan PostgreSQL keeps for the prepared statement whatever the values (the one a
    gateway's prepared listing may settle on)."""
    count = iter(range(1, len(args) + 1))
    numbered = re.sub(r"%s", lambda _: f"${next(count)}", query)
    conn.execute(f"PREPARE listing AS {numbered}")
    try:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        values = sql.SQL(", ").join(sql.Literal(arg) for arg in args)
        rows = conn.execute(sql.SQL("EXPLAIN EXECUTE listing({})").format(values)).fetchall()
        return "\n".join(row[0] for row in rows)
    finally:
        conn.execute("DEALLOCATE listing")
        conn.execute("RESET plan_cache_mode")


def test_listing_never_scans_the_jobs_table_past_100000_jobs(schema_url: str) -> None:
    store = PostgresJobStore.from_url(schema_url)
    try:
        with psycopg.connect(schema_url, autocommit=True) as conn:
            conn.execute(_JOBS, (120_000,))
            conn.execute(_TRIALS)
            conn.execute("ANALYZE jobs")
            cursor = (1700000000000000000 + 60_000 * 1000, "job_" + "0" * 32)
            kinds = (0, jobs_pb2.JOB_KIND_TRAIN, jobs_pb2.JOB_KIND_TRIAL)
            states = (0, jobs_pb2.JOB_STATE_QUEUED, jobs_pb2.JOB_STATE_SUCCEEDED)
            for kind in kinds:
                for state in states:
                    for after in (None, cursor):
                        for parent in ("", PARENT):
                            query, args = listing(kind, state, after, parent)
                            for plan in (
                                _plan(conn, query, [*args, 51]),
                                _generic_plan(conn, query, [*args, 51]),
                            ):
                                _assert_indexed(plan, kind, state, parent, f"{after=}")
            # A parent's children, whole, from the parent's index.
            for plan in (
                _plan(conn, CHILDREN, [PARENT]),
                _generic_plan(conn, CHILDREN, [PARENT]),
            ):
                assert "Seq Scan on jobs" not in plan, plan
                assert re.search(r"Index Scan (Backward )?(using|on) jobs_by_parent", plan), plan
        # And the store pages through them as ListJobs does.
        page, token = store.list(
            kind=0, state=jobs_pb2.JOB_STATE_QUEUED, page_size=50, page_token=""
        )
        assert len(page) == 50 and token
        assert [job.id for job in page] == sorted((job.id for job in page), reverse=True)
        assert all(job.kind != jobs_pb2.JOB_KIND_TRIAL for job in page)
        assert len(store.children(PARENT)) == 100
    finally:
        store.close()


def _assert_indexed(plan: str, kind: int, state: int, parent: str, after: str) -> None:
    where = f"{kind=} {state=} {parent=} {after}:\n{plan}"
    assert "Seq Scan" not in plan, where
    assert "Index Scan" in plan, where
    if parent:
        # However many trials other searches have: only this parent's are read.
        assert re.search(r"Index Scan (Backward )?(using|on) jobs_by_parent", plan), where
        assert re.search(r"Index Cond: .*parent_job_id = ", plan), where
        return
    if not kind:
        # Trials are not in the indexes read: never read to be dropped.
        assert "using jobs_listed_by_" in plan, where
    # A rare state is found through the index, not by filtering it.
    if state == jobs_pb2.JOB_STATE_QUEUED:
        assert re.search(r"Index Cond: .*state = ", plan), where


def test_the_oldest_queued_job_is_read_from_an_index_past_100000_jobs(schema_url: str) -> None:
    store = PostgresJobStore.from_url(schema_url)
    try:
        with psycopg.connect(schema_url, autocommit=True) as conn:
            conn.execute(_JOBS, (120_000,))
            conn.execute("ANALYZE jobs")
            for kind in (jobs_pb2.JOB_KIND_TRAIN, jobs_pb2.JOB_KIND_PREDICT):
                for plan in (
                    _plan(conn, OLDEST_QUEUED, [kind]),
                    _generic_plan(conn, OLDEST_QUEUED, [kind]),
                ):
                    # One seek to an end of the index, both columns in its condition.
                    assert "Seq Scan" not in plan, plan
                    assert "Backward using jobs_by_kind_state" in plan, plan
                    assert re.search(r"Index Cond: .*kind = .*state = ", plan), plan
        # Every 100th job waits, the even ones training: the first is job 100.
        oldest = store.oldest_queued(jobs_pb2.JOB_KIND_TRAIN)
        assert oldest is not None and oldest.ToNanoseconds() == 1700000000000000000 + 100 * 1000
        assert store.oldest_queued(jobs_pb2.JOB_KIND_PREDICT) is None
    finally:
        store.close()


def test_gateways_starting_together_apply_the_schema_once(schema_url: str) -> None:
    start = threading.Barrier(4)
    stores: list[PostgresJobStore] = []
    failures: list[BaseException] = []

    def open_store() -> None:
        start.wait()
        try:
            stores.append(PostgresJobStore.from_url(schema_url))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == []
        with psycopg.connect(schema_url) as conn:
            applied = conn.execute("SELECT version, name FROM schema_version").fetchall()
        assert sorted(applied) == [(m.version, m.name) for m in migrations()]
        assert applied[:2] == [(1, "initial"), (2, "model_owners_and_index")]
        assert all(store.get(new_job_id()) is None for store in stores)
    finally:
        for store in stores:
            store.close()


def test_a_schema_newer_than_the_gateway_is_refused_naming_both_versions(
    schema_url: str,
) -> None:
    PostgresJobStore.from_url(schema_url).close()
    with psycopg.connect(schema_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO schema_version (version, name) VALUES (%s, 'from_the_future')",
            (LATEST_VERSION + 1,),
        )
    with pytest.raises(SchemaMismatch) as refused:
        open_job_store(schema_url)
    message = str(refused.value)
    assert f"at version {LATEST_VERSION + 1}, newer than this mlgate knows" in message
    assert f"(version {LATEST_VERSION})" in message
    assert isinstance(refused.value, ValueError), "a gateway reports it as it does a bad setting"


def test_the_password_is_in_no_message_repr_or_log(
    schema_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # The shared server trusts loopback: the password is carried, never checked.
    with_password = schema_url.replace("postgres@", f"postgres:{PASSWORD}@")
    store = PostgresJobStore.from_url(with_password)
    try:
        assert PASSWORD not in repr(store)
        assert store.get(new_job_id()) is None
    finally:
        store.close()
    settings = GatewaySettings.from_env({"MLGATE_STORE_URL": with_password})
    assert PASSWORD not in settings.describe() and PASSWORD not in repr(settings)

    # Nothing listens there: the store starts anyway, and every call is refused at once.
    nowhere = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/mlgate"
    store = PostgresJobStore.from_url(nowhere)
    try:
        with pytest.raises(
            JobStoreUnavailable, match=r"^PostgreSQL at 127\.0\.0\.1:\d+/mlgate"
        ) as err:
            store.get(new_job_id())
        assert PASSWORD not in str(err.value)
        with pytest.raises(ConnectionError, match=r"^the job store \(postgresql\) is unreachable$"):
            store.ping()
    finally:
        store.close()
    assert caplog.records, "the outage was logged"
    assert not [r for r in caplog.records if PASSWORD in r.getMessage()]


def test_mlgate_db_upgrade_applies_the_schema_once_and_gateways_refuse_a_newer_one(
    schema_url: str, tmp_path: Path
) -> None:
    with_password = schema_url.replace("postgres@", f"postgres:{PASSWORD}@")
    env = clean_env(MLGATE_STORE_URL=with_password, MLGATE_DATA_DIR=str(tmp_path / "data"))
    first = run_mlgate("db", "upgrade", env=env)
    assert first.returncode == 0, first.stderr
    shipped = ", ".join(f"{m.version:04d}_{m.name}" for m in migrations())
    assert first.stdout.strip() == (
        "the job store (PostgreSQL at 127.0.0.1:5432/mlgate_test) went from schema version 0 "
        f"to {LATEST_VERSION}: applied {shipped}"
    )
    again = run_mlgate("db", "upgrade", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().endswith(f"is at schema version {LATEST_VERSION}: nothing to apply")

    future = LATEST_VERSION + 1
    with psycopg.connect(schema_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO schema_version (version, name) VALUES (%s, 'from_the_future')", (future,)
        )
    for argv in (("db", "upgrade"), ("gateway", "--port", "0")):
        refused = run_mlgate(*argv, env=env)
        assert refused.returncode == 2, (argv, refused.stdout, refused.stderr)
        expected = (
            f"is at version {future}, newer than this mlgate knows (version {LATEST_VERSION})"
        )
        assert expected in refused.stderr
        assert PASSWORD not in refused.stdout + refused.stderr

    unreachable = run_mlgate(
        "db",
        "upgrade",
        env={**env, "MLGATE_STORE_URL": f"postgresql://u:{PASSWORD}@127.0.0.1:1/db"},
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("error: PostgreSQL at 127.0.0.1:1/db is unreachable")
    assert PASSWORD not in unreachable.stderr


def test_stores_without_a_versioned_schema_need_no_upgrade(tmp_path: Path) -> None:
    done = run_mlgate("db", "upgrade", env=clean_env(MLGATE_DATA_DIR=str(tmp_path)))
    assert (done.returncode, done.stdout.strip()) == (
        0,
        "the sqlite job store keeps its own schema: nothing to upgrade",
    )


def test_libpq_options_in_the_url_reach_its_connections(schema_url: str) -> None:
    """``sslmode`` and the rest go to libpq as they are: mlgate's defaults only fill gaps."""
    name = f"mlgate-test-{new_job_id()[-8:]}"
    store = PostgresJobStore.from_url(f"{schema_url}&application_name={name}")
    try:
        store.get(new_job_id())
        with psycopg.connect(schema_url) as conn:
            seen = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
            ).fetchone()
        assert seen is not None and seen[0] >= 1, "the URL's application_name, not mlgate's"
    finally:
        store.close()

    # This server has no TLS: a URL that requires it is refused, saying so.
    store = PostgresJobStore.from_url(f"{schema_url}&sslmode=require")
    try:
        with pytest.raises(JobStoreUnavailable, match="SSL"):
            store.get(new_job_id())
    finally:
        store.close()


def test_statements_updating_several_jobs_lock_them_in_one_order(schema_url: str) -> None:
    """A gateway clearing outbox marks and another recording a batch of events for the same
    jobs, the rows lying in another order than their ids: both lock the jobs in id order, so
    neither waits on the other for ever (PostgreSQL would end one with "deadlock detected").

    Staged: a third connection holds the middle job while the marks and then the batch come
    to it; each holds what comes before it, in its order, and waits."""
    first, middle, last = sorted(new_job_id() for _ in range(3))
    stores = [PostgresJobStore.from_url(schema_url) for _ in range(2)]
    errors: list[Exception] = []

    def run(step: Callable[[], object]) -> None:
        try:
            step()
        except Exception as exc:
            errors.append(exc)

    try:
        # Enough jobs that PostgreSQL reads a few by their index, so each statement's own plan
        # would take them in another order (a batch by id, the marks as the rows lie).
        with psycopg.connect(schema_url, autocommit=True) as conn:
            conn.execute(_JOBS, (2000,))
            conn.execute("ANALYZE jobs")
        for job_id in (last, middle, first):  # the table holds them in the other order
            job = queued_job()
            job.id = job.last_event.job_id = job_id
            stores[0].create(job)
        events = [_running(job_id) for job_id in (first, middle, last)]
        with psycopg.connect(schema_url) as holder:
            holder.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (middle,))
            marks = threading.Thread(
                target=run, args=(lambda: stores[0].mark_published([first, middle, last]),)
            )
            marks.start()
            _wait_for_waiters(schema_url, 1)
            batch = threading.Thread(target=run, args=(lambda: stores[1].record_all(events),))
            batch.start()
            _wait_for_waiters(schema_url, 2)
        for thread in (marks, batch):
            thread.join(30)
        assert errors == []
        assert [e.seq for e in stores[0].events(last, 0)] == [1, 2]
        assert stores[0].claim_unpublished(0, 10) == [], "every mark cleared"
    finally:
        for store in stores:
            store.close()


def _wait_for_waiters(url: str, count: int) -> None:
    """Until ``count`` sessions of the database wait for a lock."""
    with psycopg.connect(url, autocommit=True) as conn:

        def waiting() -> bool:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            return row is not None and row[0] >= count

        wait_for(waiting, 10, f"{count} sessions waiting for a lock")


def _running(job_id: str) -> jobs_pb2.JobEvent:
    return jobs_pb2.JobEvent(job_id=job_id, seq=2, state=jobs_pb2.JOB_STATE_RUNNING)


def test_a_migration_shipped_after_a_later_one_is_applied_and_an_unknown_one_refused(
    schema_url: str,
) -> None:
    """Migrations written side by side may land in either order: a database that got version 4
    before this mlgate shipped 3 gets 3 as soon as it does; one holding a version this mlgate
    does not ship is refused."""
    PostgresJobStore.from_url(schema_url).close()
    with psycopg.connect(schema_url, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_version WHERE version = 2")
        # Version 2's tables are there already: this only checks that it is applied again.
        conn.execute("DROP TABLE registry_meta")
        conn.execute("ALTER TABLE model_names DROP COLUMN owner")
        conn.execute("ALTER TABLE model_entries DROP COLUMN owner, DROP COLUMN created_ns")
    PostgresJobStore.from_url(schema_url).close()
    with psycopg.connect(schema_url, autocommit=True) as conn:
        applied = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert [row[0] for row in applied] == [m.version for m in migrations()]
        conn.execute("DELETE FROM schema_version WHERE version = 1")
        conn.execute(
            "INSERT INTO schema_version (version, name) VALUES (%s, 'from_the_future')",
            (LATEST_VERSION + 1,),
        )
    with pytest.raises(SchemaMismatch, match="newer than this mlgate knows"):
        open_job_store(schema_url)
