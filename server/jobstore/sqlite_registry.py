"""The model registry in the SQLite job store's database, on the store's own connection."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mlgate.errors import NotFound
from mlgate.refs import ModelRef
from mlgate.v1 import jobs_pb2
from server.jobstore.registry import (
    AliasChange,
    ModelRegistry,
    RegistryEntry,
    Route,
    Target,
    aliased,
    merge_tags,
    ordered,
    primary,
    stamp_version,
    to_register,
    unknown,
)

__all__ = ["SCHEMA", "SQLiteModelRegistry"]

# last_version only grows, so a deleted version's number is never given to another model; it is
# 0 for a name claimed by a training job that has not succeeded yet. An owner is NULL for a name
# or model from before owners were recorded; created_ns NULL for a model not in the index.
SCHEMA = """
CREATE TABLE IF NOT EXISTS model_names (
    name TEXT PRIMARY KEY,
    last_version INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS model_entries (
    model_id TEXT PRIMARY KEY,
    name TEXT,
    version INTEGER,
    description TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '{}'
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS model_entries_by_version ON model_entries (name, version);
CREATE TABLE IF NOT EXISTS model_aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (name, alias)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS registry_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""
# Added to databases written before owners and the index: (table, column, type).
_ADDED_COLUMNS = (
    ("model_names", "owner", "TEXT"),
    ("model_entries", "owner", "TEXT"),
    ("model_entries", "created_ns", "INTEGER"),
    # A weighted alias's routes, JSON [[version, weight, model id], ...] (NULL for one version;
    # ``version`` is then its heaviest route), and its shadow.
    ("model_aliases", "routes", "TEXT"),
    ("model_aliases", "shadow_version", "INTEGER"),
    ("model_aliases", "shadow_model_id", "TEXT"),
)
# The aliases that use a version: point at it, route to it or shadow to it. Args: name, version.
_USING = (
    "FROM model_aliases WHERE name = ?1 AND (version = ?2 OR shadow_version = ?2 OR EXISTS "
    "(SELECT 1 FROM json_each(routes) WHERE json_extract(value, '$[0]') = ?2))"
)

Transaction = Callable[[], contextlib.AbstractContextManager[None]]
_ROW = "SELECT model_id, name, version, description, tags, owner, created_ns FROM model_entries"


class SQLiteModelRegistry(ModelRegistry):
    """Shares the job store's connection, its reads under the lock and its write transactions
    (both of which translate sqlite3's errors into the job store error tree)."""

    def __init__(
        self, db: sqlite3.Connection, locked: Transaction, transaction: Transaction
    ) -> None:
        self._db = db
        self._locked = locked
        self._transaction = transaction
        self._add_columns()

    def _add_columns(self) -> None:
        """Databases written before owners and the index get their columns, unset."""
        with self._transaction():
            for table, column, kind in _ADDED_COLUMNS:
                present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                if column not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            self._db.execute(
                "CREATE INDEX IF NOT EXISTS model_entries_by_age "
                "ON model_entries (created_ns DESC, model_id DESC) WHERE created_ns IS NOT NULL"
            )

    def register_in_transaction(self, job: jobs_pb2.Job) -> None:
        """Inside the store's transaction that records ``job`` SUCCEEDED: index its model, and
        allocate its name's next version."""
        found = to_register(job)
        if found is None:
            return
        owner = found.owner or None
        name: str | None = None
        version: int | None = None
        if found.name:
            name = found.name
            (version,) = self._db.execute(
                "INSERT INTO model_names (name, last_version, owner) VALUES (?, 1, ?) "
                "ON CONFLICT (name) DO UPDATE SET last_version = last_version + 1 "
                "RETURNING last_version",
                (name, owner),
            ).fetchone()
            stamp_version(job, name, version)
        self._db.execute(
            "INSERT INTO model_entries (model_id, name, version, owner, created_ns) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (model_id) DO UPDATE SET name = excluded.name, "
            "version = excluded.version, owner = excluded.owner, created_ns = excluded.created_ns",
            (found.model_id, name, version, owner, found.created_ns),
        )

    # -- reads -------------------------------------------------------------------------------

    def target(self, ref: ModelRef) -> Target:
        if ref.model_id:
            return Target(ref.model_id)
        with self._locked():
            if ref.alias:
                row = self._db.execute(
                    "SELECT e.model_id, a.version, a.routes, a.shadow_version, a.shadow_model_id "
                    "FROM model_aliases a JOIN model_entries e "
                    "ON e.name = a.name AND e.version = a.version WHERE a.name = ? AND a.alias = ?",
                    (ref.name, ref.alias),
                ).fetchone()
            elif ref.version:
                row = self._db.execute(
                    "SELECT model_id, version FROM model_entries WHERE name = ? AND version = ?",
                    (ref.name, ref.version),
                ).fetchone()
            else:
                row = self._db.execute(
                    "SELECT model_id, version FROM model_entries WHERE name = ? "
                    "ORDER BY version DESC LIMIT 1",
                    (ref.name,),
                ).fetchone()
            if row is not None:
                return _target(ref.name, row)
            exists = self._db.execute(
                "SELECT 1 FROM model_names WHERE name = ?", (ref.name,)
            ).fetchone()
        raise unknown(ref, exists is not None)

    def entries(self, model_ids: Sequence[str]) -> dict[str, RegistryEntry]:
        found = {model_id: RegistryEntry(model_id) for model_id in model_ids}
        with self._locked():
            for start in range(0, len(model_ids), 500):
                batch = list(model_ids[start : start + 500])
                marks = ",".join("?" * len(batch))
                rows = self._db.execute(f"{_ROW} WHERE model_id IN ({marks})", batch).fetchall()
                for row in rows:
                    found[row[0]] = self._entry(row)
        return found

    def versions(self, name: str) -> list[RegistryEntry]:
        with self._locked():
            rows = self._db.execute(
                f"{_ROW} WHERE name = ? ORDER BY version DESC", (name,)
            ).fetchall()
            return [self._entry(row) for row in rows]

    def page(self, limit: int, before: tuple[int, str] | None) -> list[RegistryEntry]:
        where, args = "created_ns IS NOT NULL", []
        if before is not None:
            where += " AND (created_ns < ? OR (created_ns = ? AND model_id < ?))"
            args = [before[0], before[0], before[1]]
        with self._locked():
            rows = self._db.execute(
                f"{_ROW} WHERE {where} ORDER BY created_ns DESC, model_id DESC LIMIT ?",
                [*args, limit],
            ).fetchall()
            return [self._entry(row) for row in rows]

    def claim_name(self, name: str, owner: str) -> str:
        with self._transaction():
            self._db.execute(
                "INSERT INTO model_names (name, last_version, owner) VALUES (?, 0, ?) "
                "ON CONFLICT (name) DO NOTHING",
                (name, owner),
            )
            (holder,) = self._db.execute(
                "SELECT owner FROM model_names WHERE name = ?", (name,)
            ).fetchone()
        return holder or ""

    def adopted(self) -> bool:
        with self._locked():
            row = self._db.execute("SELECT 1 FROM registry_meta WHERE key = 'adopted'").fetchone()
        return row is not None

    def adopt(self, stored: Sequence[tuple[str, int]]) -> None:
        with self._transaction():
            self._db.executemany(
                "INSERT INTO model_entries (model_id, created_ns) VALUES (?, ?) "
                "ON CONFLICT (model_id) DO UPDATE "
                "SET created_ns = coalesce(model_entries.created_ns, excluded.created_ns)",
                stored,
            )
            self._db.execute(
                "INSERT INTO registry_meta (key, value) VALUES ('adopted', '1') "
                "ON CONFLICT (key) DO NOTHING"
            )

    def _entry(self, row: tuple[Any, ...]) -> RegistryEntry:
        """An entry from a row; the caller holds the lock."""
        model_id, name, version, description, tags, owner, created_ns = row
        aliases: tuple[str, ...] = ()
        if name:
            aliases = tuple(
                alias
                for (alias,) in self._db.execute(
                    f"SELECT alias {_USING} ORDER BY alias", (name, version)
                )
            )
        return RegistryEntry(
            model_id,
            name or "",
            version or 0,
            aliases,
            description,
            json.loads(tags),
            owner or "",
            created_ns or 0,
        )

    # -- writes ------------------------------------------------------------------------------

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        routes: Sequence[Route] = (),
        shadow_version: int = 0,
    ) -> AliasChange:
        with self._transaction():
            routes = tuple(
                Route(r.version, r.weight, self._model_of(name, r.version)) for r in ordered(routes)
            )
            if routes:
                version = primary(routes).version
            model_id = self._model_of(name, version)
            shadow_id = self._model_of(name, shadow_version) if shadow_version else ""
            previous = self._db.execute(
                "SELECT version FROM model_aliases WHERE name = ? AND alias = ?", (name, alias)
            ).fetchone()
            stored = (
                json.dumps([[r.version, r.weight, r.model_id] for r in routes]) if routes else None
            )
            self._db.execute(
                "INSERT INTO model_aliases "
                "(name, alias, version, routes, shadow_version, shadow_model_id) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name, alias) DO UPDATE SET "
                "version = excluded.version, routes = excluded.routes, "
                "shadow_version = excluded.shadow_version, "
                "shadow_model_id = excluded.shadow_model_id",
                (name, alias, version, stored, shadow_version or None, shadow_id or None),
            )
        return AliasChange(
            name,
            alias,
            version,
            model_id,
            previous[0] if previous else 0,
            routes,
            shadow_version,
            shadow_id,
        )

    def _model_of(self, name: str, version: int) -> str:
        """The model id of ``name``'s ``version``; NotFound if there is none. In a transaction."""
        row = self._db.execute(
            "SELECT model_id FROM model_entries WHERE name = ? AND version = ?", (name, version)
        ).fetchone()
        if row is None:
            exists = self._db.execute(
                "SELECT 1 FROM model_names WHERE name = ?", (name,)
            ).fetchone()
            raise unknown(ModelRef(name=name, version=version), exists is not None)
        return str(row[0])

    def delete_alias(self, name: str, alias: str) -> None:
        with self._transaction():
            deleted = self._db.execute(
                "DELETE FROM model_aliases WHERE name = ? AND alias = ?", (name, alias)
            ).rowcount
        if not deleted:
            raise NotFound(f"model {name!r} has no alias {alias!r}")

    def update(
        self,
        model_id: str,
        description: str | None,
        set_tags: Mapping[str, str],
        remove_tags: Sequence[str],
    ) -> RegistryEntry:
        with self._transaction():
            row = self._db.execute(f"{_ROW} WHERE model_id = ?", (model_id,)).fetchone()
            current = self._entry(row) if row else RegistryEntry(model_id)
            tags = merge_tags(current.tags, set_tags, remove_tags)
            text = current.description if description is None else description
            self._db.execute(
                "INSERT INTO model_entries (model_id, description, tags) VALUES (?, ?, ?) "
                "ON CONFLICT (model_id) DO UPDATE SET description = excluded.description, "
                "tags = excluded.tags",
                (model_id, text, json.dumps(tags, sort_keys=True)),
            )
            return self._entry(
                self._db.execute(f"{_ROW} WHERE model_id = ?", (model_id,)).fetchone()
            )

    def forget(self, model_id: str, *, force: bool) -> RegistryEntry:
        with self._transaction():
            row = self._db.execute(f"{_ROW} WHERE model_id = ?", (model_id,)).fetchone()
            if row is None:
                return RegistryEntry(model_id)
            entry = self._entry(row)
            if entry.aliases and not force:
                raise aliased(model_id, entry.name, entry.version, entry.aliases)
            self._db.execute(f"DELETE {_USING}", (entry.name, entry.version))
            self._db.execute("DELETE FROM model_entries WHERE model_id = ?", (model_id,))
        return entry


def _target(name: str, row: tuple[Any, ...]) -> Target:
    """A target from a resolving row: model id, version, and for an alias routes and shadow."""
    model_id, version, routes, shadow_version, shadow_model_id = (*row, None, None, None)[:5]
    return Target(
        str(model_id),
        name,
        int(version),
        tuple(Route(v, w, m) for v, w, m in json.loads(routes)) if routes else (),
        shadow_version or 0,
        shadow_model_id or "",
    )
