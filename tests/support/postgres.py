"""PostgreSQL for tests: the shared server on 127.0.0.1:5432, used under a fresh schema per test
(dropped afterwards), and private servers on free ports for the tests that stop one."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from server.jobstore.postgres import PostgresJobStore
from tests.support.fresh import free_port
from tests.support.jobstores import closing_all

__all__ = [
    "BIN",
    "SHARED_URL",
    "PrivatePostgres",
    "drop_database",
    "fresh_schema",
    "in_schema",
    "postgres_stores",
    "require_postgres",
]

SHARED_URL = os.environ.get(
    "MLGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/mlgate_test"
)
START_HINT = (
    "start it with: pg_ctlcluster --skip-systemctl-redirect 15 main start   (or: make services, "
    "which also installs PostgreSQL and creates the mlgate_test database)"
)
#: Debian's server binaries, which are not on PATH.
BIN = Path(os.environ.get("MLGATE_TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))


def require_postgres(url: str = SHARED_URL) -> str:
    """``url`` if PostgreSQL answers there (its database is created if missing); otherwise the
    test fails saying how to start it."""
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc):
            pytest.fail(
                f"PostgreSQL is not answering at {url} ({exc}); {START_HINT}", pytrace=False
            )
        _create_database(url)
    return url


def _create_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    # Another test process may make it first.
    with (
        psycopg.connect(maintenance, autocommit=True, connect_timeout=3) as conn,
        contextlib.suppress(psycopg.errors.DuplicateDatabase),
    ):
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str, url: str = SHARED_URL) -> None:
    """Drop the database ``name`` of the shared server (a walkthrough's), ending its sessions."""
    maintenance = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def in_schema(url: str, schema: str) -> str:
    """``url`` with its tables in ``schema`` (libpq's ``options``, as an operator would)."""
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


@contextmanager
def fresh_schema(url: str = SHARED_URL) -> Iterator[str]:
    """The URL of a new, empty schema of the shared test database, dropped afterwards."""
    require_postgres(url)
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield in_schema(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def postgres_stores(
    retention: float = 3600.0,
) -> Generator[Callable[[], PostgresJobStore], None, None]:
    """A factory of job stores sharing one fresh schema, as several gateways would."""
    with (
        fresh_schema() as url,
        closing_all(lambda: PostgresJobStore.from_url(url, retention)) as make,
    ):
        yield make


def _as_postgres(*command: str) -> list[str]:
    """``command`` as the postgres OS user: the server refuses to run as root."""
    return ["runuser", "-u", "postgres", "--", *command] if os.getuid() == 0 else list(command)


class PrivatePostgres:
    """A PostgreSQL server of the test's own on a free port, its data in a directory of its
    own; password authentication over TCP (user ``postgres``, ``password``). It can be stopped
    and started again on the same port with the same data."""

    def __init__(self, password: str = "s3cret-Pg-pw") -> None:
        if not (BIN / "initdb").exists():
            pytest.fail(
                f"{BIN}/initdb is missing: apt-get install postgresql (or: make services)",
                pytrace=False,
            )
        self.password = password
        self.port = free_port()
        self.url = f"postgresql://postgres:{password}@127.0.0.1:{self.port}/postgres"
        # Not under pytest's tmp_path: the postgres user must reach it, and that is root's only.
        self.root = Path(tempfile.mkdtemp(prefix="mlgate-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        secret = self.root / "password"
        secret.write_text(password)
        shutil.chown(self.root, "postgres")
        shutil.chown(secret, "postgres")
        self._run(
            BIN / "initdb", "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
            "--auth-host=scram-sha-256", f"--pwfile={secret}", "--no-sync",
        )  # fmt: skip

    def _run(self, *command: str | Path) -> None:
        done = subprocess.run(
            _as_postgres(*map(str, command)), capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            pytest.fail(f"{command[0]} failed: {done.stdout}{done.stderr}\n{log}", pytrace=False)

    def start(self) -> PrivatePostgres:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        self._run(BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "start")
        return self

    def stop(self) -> None:
        """A fast shutdown, as an operator's restart: sessions are ended, data kept."""
        self._run(BIN / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()
