"""The PostgreSQL job store's schema: versioned migration files, each applied once, in order.

``migrations/NNNN_name.sql`` holds version NNNN. The versions a database has are rows of its
``schema_version`` table. Every shipped version the database lacks is applied, in order, even one
below the database's highest: migrations written side by side (3 and 4) may ship one before the
other, so a database can hold 1, 2 and 4 before it gets 3. Such migrations must not depend on
each other. Pending migrations are applied in one transaction, under an advisory
lock held until it commits: gateways starting at once (or ``mlgate db upgrade`` beside them)
apply each migration once, the others waiting and then finding nothing to do, and a migration
that fails leaves the schema as it was.

A database holding a version this mlgate does not ship was upgraded by a newer mlgate: this one
refuses to use it (``SchemaMismatch``) rather than write records the
newer schema may not expect.

Tables are created in the first schema of the connection's ``search_path`` (``public`` unless the
URL says otherwise, e.g. ``?options=-csearch_path%3Dmlgate``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

from mlgate.store_errors import JobStoreError, SchemaMismatch

__all__ = ["LATEST_VERSION", "Migration", "Upgrade", "migrations", "upgrade"]

_FILE = re.compile(r"(?P<version>\d{4})_(?P<name>\w+)\.sql")
# The advisory lock's first key, mlgate's own ("mlgt"); the second is the schema's hash.
_LOCK_CLASS = 0x6D6C6774
_VERSION_TABLE = """
CREATE TABLE schema_version (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    """One migration file: its version, its name and its SQL."""

    version: int
    name: str
    sql: str


@dataclass(frozen=True)
class Upgrade:
    """What ``upgrade`` found and did."""

    before: int
    after: int
    applied: tuple[str, ...]


@functools.cache
def migrations() -> tuple[Migration, ...]:
    """The migrations this mlgate ships, by version; versions are distinct, from 1."""
    found = []
    for entry in resources.files("server.jobstore").joinpath("migrations").iterdir():
        match = _FILE.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match["version"]), match["name"], entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions) or not versions or versions[0] != 1:
        raise RuntimeError(f"migration versions are not distinct from 1: {versions}")
    return tuple(found)


LATEST_VERSION = migrations()[-1].version


def upgrade(conn: psycopg.Connection[Any], where: str) -> Upgrade:
    """Apply the pending migrations on ``conn`` (in autocommit mode) in one transaction;
    raises SchemaMismatch if the database is ahead of this mlgate, JobStoreError if the
    connection's search_path names no schema that exists."""
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(coalesce(current_schema(), '')))",
            (_LOCK_CLASS,),
            prepare=False,
        )
        row = conn.execute(
            "SELECT current_schema(), to_regclass('schema_version') IS NOT NULL", prepare=False
        ).fetchone()
        assert row is not None
        schema, versioned = row
        if schema is None:
            raise JobStoreError(
                f"PostgreSQL at {where}: no schema of the search_path exists; create it "
                "(CREATE SCHEMA ...) or change the URL's search_path"
            )
        present: set[int] = set()
        if versioned:
            rows = conn.execute("SELECT version FROM schema_version", prepare=False).fetchall()
            present = {int(row[0]) for row in rows}
        else:
            conn.execute(_VERSION_TABLE, prepare=False)
        before = max(present, default=0)
        strange = present - {m.version for m in migrations()}
        if before > LATEST_VERSION:
            raise SchemaMismatch(
                f"the job store's schema (PostgreSQL at {where}) is at version {before}, newer "
                f"than this mlgate knows (version {LATEST_VERSION}): a newer mlgate upgraded it; "
                "run that release (or a later one)"
            )
        if strange:
            raise SchemaMismatch(
                f"the job store's schema (PostgreSQL at {where}) has version {min(strange)}, "
                f"which this mlgate does not ship (it knows up to version {LATEST_VERSION}): a "
                "newer mlgate upgraded it; run that release (or a later one)"
            )
        applied = []
        for migration in migrations():
            if migration.version in present:
                continue
            conn.execute(migration.sql.encode(), prepare=False)
            conn.execute(
                "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
                prepare=False,
            )
            applied.append(f"{migration.version:04d}_{migration.name}")
    return Upgrade(before, max(before, LATEST_VERSION), tuple(applied))
