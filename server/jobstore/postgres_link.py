"""The PostgreSQL job store's connections: one pool per store, and psycopg's errors translated at
this one boundary.

``postgresql://USER:PASSWORD@HOST:PORT/DB?sslmode=...`` (or ``postgres://``) is handed to libpq
as it is, so every libpq option in the URL applies; mlgate only adds defaults the URL does not
set (timeouts, TCP keepalives, an application name). The password is never in a message or a repr:
messages name the server as ``host:port/db`` and drop the password from any driver text.

An outage is noticed by the call that meets it: that call and the ones after it answer
``JobStoreUnavailable`` at once (they do not queue for a connection that is not coming), the
pool's idle connections are checked so that a restarted server costs one failed call rather than
one per stale connection, and the pool reconnects in the background while calls keep asking.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from mlgate.store_errors import JobStoreError, JobStoreUnavailable
from server.jobstore.postgres_schema import Upgrade, upgrade

__all__ = ["Connection", "PostgresLink", "describe_conninfo"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Connection = psycopg.Connection[Any]

# Defaults for what the URL leaves unset; the URL's own values win. A server that vanished from
# the network (a host down, a partition) fails a call within seconds instead of hanging it:
# unacknowledged data gives up after 15 s, an idle connection is probed after 10 s.
_DEFAULTS = {
    "connect_timeout": "3",
    "application_name": "mlgate",
    "tcp_user_timeout": "15000",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
}
# How long a call waits for a pooled connection: while the server answers, for one to be free;
# once a call has found it unreachable, barely at all, so an outage answers fast.
_WAIT = 5.0
_WAIT_FAILING = 0.2
# A background reconnection gives up after this long; the next call that asks starts another,
# so reconnection never backs off further than this while the store is in use.
_RECONNECT_WINDOW = 3.0
# Failures that mean "not now", as opposed to a request PostgreSQL refused: the server is down,
# restarting, shutting connections, out of connections or disk, a lock or statement timed out,
# or the address is a read-only standby (after a failover).
_UNAVAILABLE: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg.errors.ReadOnlySqlTransaction,
)


def describe_conninfo(params: dict[str, Any]) -> str:
    """``host:port/db`` of parsed connection parameters: how messages name the server."""
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or params.get('user') or ''}"


class PostgresLink:
    """A connection pool with the translation of psycopg's errors, and the schema checked (and
    migrated) before the first call that uses it."""

    def __init__(self, url: str, *, min_size: int = 2, max_size: int = 10) -> None:
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise ValueError(
                f"MLGATE_STORE_URL is not a PostgreSQL URL libpq accepts: {exc}"
            ) from None
        self._password = str(params.get("password") or "")
        self.where = describe_conninfo(params)
        self._kwargs: dict[str, Any] = {k: v for k, v in _DEFAULTS.items() if k not in params}
        self._url = url
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            # Every statement is one of a few fixed texts: prepared on a connection's first use.
            kwargs={"autocommit": True, "prepare_threshold": 0, **self._kwargs},
            min_size=min_size,
            max_size=max_size,
            open=False,
            name="mlgate-job-store",
            reconnect_timeout=_RECONNECT_WINDOW,
        )
        self._failing = False
        self._reason = ""  # what the last lost or refused connection said, scrubbed
        self._schema_checked = False
        self._schema_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresLink({self.where!r})"

    def upgrade(self) -> Upgrade:
        """Apply the pending migrations on a connection of its own (so at once: a server that
        refuses connections fails it fast). Raises JobStoreUnavailable if the server cannot be
        reached, SchemaMismatch if its schema is newer than this mlgate's."""
        try:
            with psycopg.connect(self._url, autocommit=True, **self._kwargs) as conn:
                done = upgrade(conn, self.where)
        except psycopg.Error as exc:
            raise self.translate(exc) from None
        self._schema_checked = True
        return done

    def open(self) -> None:
        """Open the pool and bring the schema up to date if the server answers; if it does not,
        the first call that finds it answering will. Raises SchemaMismatch for a schema newer
        than this mlgate's."""
        self._pool.open(wait=False)
        try:
            self.upgrade()
        except JobStoreUnavailable as exc:
            log.warning("the job store is unreachable at start; serving, and trying again: %s", exc)

    def run(self, work: Callable[[Connection], T], *, retry: bool = False) -> T:
        """``work`` on a pooled connection, with psycopg's errors translated. With ``retry``
        (reads, which are safe to repeat), a call that lost its connection tries once more on
        another: after a server restart the pool may still hold connections to the old one."""
        if not self._schema_checked:
            self._check_schema()
        tries = 2 if retry else 1
        while True:
            tries -= 1
            try:
                result = self._on_connection(work)
            except psycopg.Error as exc:
                error = self.translate(exc)
                lost = isinstance(error, JobStoreUnavailable) and not isinstance(exc, PoolTimeout)
                if tries and lost:
                    continue
                raise error from None
            if self._failing:
                self._failing = False
                log.info("the job store (PostgreSQL at %s) answers again", self.where)
            return result

    def _on_connection(self, work: Callable[[Connection], T]) -> T:
        # getconn and putconn rather than the pool's context manager, whose commit on exit is
        # half the client's CPU of a short statement (the connections are in autocommit: work
        # that opens a transaction ends it).
        conn = self._pool.getconn(_WAIT_FAILING if self._failing else _WAIT)
        try:
            return work(conn)
        finally:
            self._pool.putconn(conn)

    def translate(self, exc: psycopg.Error) -> JobStoreError:
        """The job store error for a psycopg error: its text without the password, and for a
        lost connection, the outage noted (logged once, the pool's idle connections checked)."""
        text = self._scrub(
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        )
        if not isinstance(exc, _UNAVAILABLE):
            return JobStoreError(f"PostgreSQL at {self.where} refused a statement: {text}")
        if not isinstance(exc, PoolTimeout):
            self._reason = text
        elif self._reason:
            # "couldn't get a connection" alone would hide why: say what the last try met.
            text = f"no connection to be had (the last failure: {self._reason})"
        if not self._failing:
            self._failing = True
            if not self._pool.closed:  # a running store's outage; else the caller says it
                log.warning("the job store (PostgreSQL at %s) is unreachable: %s", self.where, text)
                # Off the caller's thread: checking each idle connection is a round trip.
                checking = threading.Thread(target=self._check_idle, name="mlgate-pg-check")
                checking.daemon = True
                checking.start()
        return JobStoreUnavailable(f"PostgreSQL at {self.where} is unreachable: {text}")

    def _scrub(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    def _check_idle(self) -> None:
        # The pool replaces whatever fails the check; nothing else to do here.
        with contextlib.suppress(psycopg.Error):
            self._pool.check()

    def _check_schema(self) -> None:
        """Migrate (or refuse a newer schema) before the first call that uses the store, when
        the server did not answer at start."""
        with self._schema_lock:
            if self._schema_checked:
                return
            try:
                with self._pool.connection(_WAIT_FAILING if self._failing else _WAIT) as conn:
                    upgrade(conn, self.where)
            except psycopg.Error as exc:
                raise self.translate(exc) from None
            self._schema_checked = True

    def ping(self) -> None:
        """One round trip; ConnectionError naming PostgreSQL (and nothing else) if it fails."""
        try:
            self.run(lambda conn: conn.execute("SELECT 1").fetchone())
        except JobStoreError:
            raise ConnectionError("the job store (postgresql) is unreachable") from None

    def close(self) -> None:
        self._pool.close()
