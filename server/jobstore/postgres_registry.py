"""The model registry in the PostgreSQL job store's database, on the store's connections.

Reads are one statement each. Writes that must see a row as it is when they change it lock it:
``set_alias`` shares the locks of the versions it points, routes and shadows to, and ``forget``
takes that row's lock before reading the aliases, so an alias can never be left pointing at a forgotten version, and a
version is allocated in the transaction that records its job SUCCEEDED (``JobStore.record``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from psycopg.types.json import Jsonb

from mlgate.errors import NotFound
from mlgate.refs import ModelRef
from mlgate.v1 import jobs_pb2
from server.jobstore.postgres_link import Connection, PostgresLink
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

__all__ = ["PostgresModelRegistry"]

_ALLOCATE = """
INSERT INTO model_names (name, last_version, owner) VALUES (%s, 1, %s)
ON CONFLICT (name) DO UPDATE SET last_version = model_names.last_version + 1
RETURNING last_version
"""
_REGISTER = """
INSERT INTO model_entries (model_id, name, version, owner, created_ns) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (model_id) DO UPDATE SET name = excluded.name, version = excluded.version,
    owner = excluded.owner, created_ns = excluded.created_ns
"""
# The row a concurrent claim inserted is not visible to the statement's snapshot: read it after.
_CLAIM = """
INSERT INTO model_names (name, last_version, owner) VALUES (%s, 0, %s) ON CONFLICT DO NOTHING
"""
_NAME_OWNER = "SELECT coalesce(owner, '') FROM model_names WHERE name = %s"
_ADOPTED = "SELECT EXISTS (SELECT 1 FROM registry_meta WHERE key = 'adopted')"
_ADOPT = """
INSERT INTO model_entries (model_id, created_ns) SELECT * FROM unnest(%s::text[], %s::bigint[])
ON CONFLICT (model_id) DO UPDATE
SET created_ns = coalesce(model_entries.created_ns, excluded.created_ns)
"""
_MARK_ADOPTED = "INSERT INTO registry_meta VALUES ('adopted', '1') ON CONFLICT DO NOTHING"
_NAME_EXISTS = "EXISTS (SELECT 1 FROM model_names WHERE name = %(name)s)"
# One row whether or not the reference resolves: the target's columns are NULL if not.
_RESOLVE = """
SELECT t.*, {exists} FROM (SELECT 1) one LEFT JOIN ({target}) t ON true
""".replace("{exists}", _NAME_EXISTS)
_RESOLVE_ALIAS = _RESOLVE.replace(
    "{target}",
    """SELECT e.model_id, a.version, a.routes, a.shadow_version, a.shadow_model_id
    FROM model_aliases a JOIN model_entries e ON e.name = a.name AND e.version = a.version
    WHERE a.name = %(name)s AND a.alias = %(alias)s""",
)
_RESOLVE_VERSION = _RESOLVE.replace(
    "{target}",
    """SELECT model_id, version, NULL::jsonb, NULL::integer, NULL::text FROM model_entries
    WHERE name = %(name)s AND version = %(version)s""",
)
_RESOLVE_LATEST = _RESOLVE.replace(
    "{target}",
    """SELECT model_id, version, NULL::jsonb, NULL::integer, NULL::text FROM model_entries
    WHERE name = %(name)s ORDER BY version DESC LIMIT 1""",
)
# The aliases that use version e.version of e.name: point at it, route or shadow to it.
_USES = """a.name = e.name AND (a.version = e.version OR a.shadow_version = e.version
    OR a.routes @> jsonb_build_array(jsonb_build_object('version', e.version)))"""
_ENTRY = f"""
SELECT e.model_id, e.name, e.version, e.description, e.tags,
       coalesce((SELECT array_agg(a.alias ORDER BY a.alias) FROM model_aliases a
                 WHERE {_USES}), '{{}}'),
       e.owner, e.created_ns
FROM model_entries e
"""
_ENTRIES = _ENTRY + " WHERE e.model_id = ANY(%s)"
_VERSIONS = _ENTRY + " WHERE e.name = %s ORDER BY e.version DESC"
_NEWEST = (
    _ENTRY
    + """ WHERE e.created_ns IS NOT NULL
ORDER BY e.created_ns DESC, e.model_id DESC LIMIT %(limit)s"""
)
_NEWEST_BEFORE = (
    _ENTRY
    + """ WHERE e.created_ns IS NOT NULL
    AND (e.created_ns, e.model_id) < (%(created_ns)s, %(id)s)
ORDER BY e.created_ns DESC, e.model_id DESC LIMIT %(limit)s"""
)
# FOR SHARE: a concurrent ``forget`` of one of these versions waits for this alias, then sees it.
_ALIAS_VERSIONS = f"""
SELECT (SELECT coalesce(jsonb_object_agg(version, model_id), '{{}}') FROM (
    SELECT version, model_id FROM model_entries
    WHERE name = %(name)s AND version = ANY(%(versions)s) FOR SHARE) v),
    (SELECT version FROM model_aliases WHERE name = %(name)s AND alias = %(alias)s),
    {_NAME_EXISTS}
"""
_SET_ALIAS = """
INSERT INTO model_aliases (name, alias, version, routes, shadow_version, shadow_model_id)
VALUES (%(name)s, %(alias)s, %(version)s, %(routes)s, %(shadow_version)s, %(shadow_model_id)s)
ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version, routes = excluded.routes,
    shadow_version = excluded.shadow_version, shadow_model_id = excluded.shadow_model_id
"""
_DELETE_ALIAS = "DELETE FROM model_aliases WHERE name = %s AND alias = %s"
_LOCK_ENTRY = "INSERT INTO model_entries (model_id) VALUES (%s) ON CONFLICT DO NOTHING"
_UPDATE = "UPDATE model_entries SET description = %s, tags = %s WHERE model_id = %s"
_LOCK_VERSION = "SELECT 1 FROM model_entries WHERE model_id = %s FOR UPDATE"
_FORGET = """
WITH unaliased AS (
    DELETE FROM model_aliases a USING (SELECT %(name)s::text AS name,
                                              %(version)s::integer AS version) e
    WHERE {uses}
)
DELETE FROM model_entries WHERE model_id = %(model_id)s
""".replace("{uses}", _USES)


def _entry(row: Sequence[Any]) -> RegistryEntry:
    model_id, name, version, description, tags, aliases, owner, created_ns = row
    return RegistryEntry(
        model_id,
        name or "",
        version or 0,
        tuple(aliases),
        description,
        dict(tags),
        owner or "",
        created_ns or 0,
    )


class PostgresModelRegistry(ModelRegistry):
    """Uses the job store's link: its pool, its error translation and its schema."""

    def __init__(self, link: PostgresLink) -> None:
        self._link = link

    @staticmethod
    def wants_version(job: jobs_pb2.Job) -> bool:
        """Whether recording ``job`` as it is now registers a model (and maybe a version)."""
        return to_register(job) is not None

    @staticmethod
    def register_in_transaction(conn: Connection, job: jobs_pb2.Job) -> None:
        """Inside the store's transaction that records ``job`` SUCCEEDED: index its model and
        allocate its name's version (the name's row stays locked until the transaction ends),
        stamping the job with it."""
        found = to_register(job)
        if found is None:
            return
        owner = found.owner or None
        name, version = found.name or None, None
        if name:
            allocated = conn.execute(_ALLOCATE, (name, owner)).fetchone()
            assert allocated is not None
            version = allocated[0]
            stamp_version(job, name, version)
        conn.execute(_REGISTER, (found.model_id, name, version, owner, found.created_ns))

    # -- reads -------------------------------------------------------------------------------

    def target(self, ref: ModelRef) -> Target:
        if ref.model_id:
            return Target(ref.model_id)
        if ref.alias:
            sql = _RESOLVE_ALIAS
        elif ref.version:
            sql = _RESOLVE_VERSION
        else:
            sql = _RESOLVE_LATEST
        params = {"name": ref.name, "alias": ref.alias, "version": ref.version}
        row = self._link.run(lambda conn: conn.execute(sql, params).fetchone(), retry=True)
        assert row is not None
        model_id, version, routes, shadow_version, shadow_model_id, name_exists = row
        if model_id is None:
            raise unknown(ref, bool(name_exists))
        return Target(
            str(model_id),
            ref.name,
            version,
            tuple(Route(r["version"], r["weight"], r["model_id"]) for r in routes or ()),
            shadow_version or 0,
            shadow_model_id or "",
        )

    def entries(self, model_ids: Sequence[str]) -> dict[str, RegistryEntry]:
        found = {model_id: RegistryEntry(model_id) for model_id in model_ids}
        if not model_ids:
            return found
        rows = self._link.run(
            lambda conn: conn.execute(_ENTRIES, (list(model_ids),), binary=True).fetchall(),
            retry=True,
        )
        for row in rows:
            found[row[0]] = _entry(row)
        return found

    def versions(self, name: str) -> list[RegistryEntry]:
        rows = self._link.run(
            lambda conn: conn.execute(_VERSIONS, (name,), binary=True).fetchall(), retry=True
        )
        return [_entry(row) for row in rows]

    def page(self, limit: int, before: tuple[int, str] | None) -> list[RegistryEntry]:
        sql = _NEWEST
        params: dict[str, int | str] = {"limit": limit}
        if before is not None:
            sql, params = _NEWEST_BEFORE, {"limit": limit, "created_ns": before[0], "id": before[1]}
        rows = self._link.run(
            lambda conn: conn.execute(sql, params, binary=True).fetchall(), retry=True
        )
        return [_entry(row) for row in rows]

    def adopted(self) -> bool:
        row = self._link.run(lambda conn: conn.execute(_ADOPTED).fetchone(), retry=True)
        return bool(row and row[0])

    # -- writes ------------------------------------------------------------------------------

    def claim_name(self, name: str, owner: str) -> str:
        def claim(conn: Connection) -> str:
            conn.execute(_CLAIM, (name, owner))
            row = conn.execute(_NAME_OWNER, (name,)).fetchone()
            assert row is not None
            return str(row[0])

        return self._link.run(claim)

    def adopt(self, stored: Sequence[tuple[str, int]]) -> None:
        ids = [model_id for model_id, _ in stored]
        created = [created_ns for _, created_ns in stored]

        def write(conn: Connection) -> None:
            with conn.transaction():
                conn.execute(_ADOPT, (ids, created))
                conn.execute(_MARK_ADOPTED)

        self._link.run(write)

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        routes: Sequence[Route] = (),
        shadow_version: int = 0,
    ) -> AliasChange:
        if routes:
            version = primary(routes).version
        wanted = [version, *(r.version for r in routes), shadow_version]
        wanted = [number for number in wanted if number]
        params: dict[str, Any] = {"name": name, "alias": alias, "versions": wanted}

        def write(conn: Connection) -> AliasChange:
            with conn.transaction():
                row = conn.execute(_ALIAS_VERSIONS, params).fetchone()
                assert row is not None
                found, previous, name_exists = row
                for number in wanted:
                    if str(number) not in found:
                        raise unknown(ModelRef(name=name, version=number), bool(name_exists))
                routed = tuple(
                    Route(r.version, r.weight, found[str(r.version)]) for r in ordered(routes)
                )
                shadow_id = found[str(shadow_version)] if shadow_version else ""
                stored = [
                    {"version": r.version, "weight": r.weight, "model_id": r.model_id}
                    for r in routed
                ]
                conn.execute(
                    _SET_ALIAS,
                    params
                    | {
                        "version": version,
                        "routes": Jsonb(stored) if stored else None,
                        "shadow_version": shadow_version or None,
                        "shadow_model_id": shadow_id or None,
                    },
                )
            return AliasChange(
                name,
                alias,
                version,
                found[str(version)],
                previous or 0,
                routed,
                shadow_version,
                shadow_id,
            )

        return self._link.run(write)

    def delete_alias(self, name: str, alias: str) -> None:
        deleted = self._link.run(lambda conn: conn.execute(_DELETE_ALIAS, (name, alias)).rowcount)
        if not deleted:
            raise NotFound(f"model {name!r} has no alias {alias!r}")

    def update(
        self,
        model_id: str,
        description: str | None,
        set_tags: Mapping[str, str],
        remove_tags: Sequence[str],
    ) -> RegistryEntry:
        def write(conn: Connection) -> RegistryEntry:
            with conn.transaction():
                # Created if new, so that there is a row to lock: no concurrent update is lost.
                conn.execute(_LOCK_ENTRY, (model_id,))
                current = self._locked_entry(conn, model_id)
                tags = merge_tags(current.tags, set_tags, remove_tags)
                text = current.description if description is None else description
                conn.execute(_UPDATE, (text, Jsonb(tags), model_id))
            return self._locked_entry(conn, model_id)

        return self._link.run(write)

    def forget(self, model_id: str, *, force: bool) -> RegistryEntry:
        def write(conn: Connection) -> RegistryEntry:
            with conn.transaction():
                if conn.execute(_LOCK_VERSION, (model_id,)).fetchone() is None:
                    return RegistryEntry(model_id)
                # Read after the lock: an alias a concurrent set_alias just made is seen.
                entry = self._locked_entry(conn, model_id)
                if entry.aliases and not force:
                    raise aliased(model_id, entry.name, entry.version, entry.aliases)
                params = {"name": entry.name, "version": entry.version, "model_id": model_id}
                conn.execute(_FORGET, params)
            return entry

        return self._link.run(write)

    @staticmethod
    def _locked_entry(conn: Connection, model_id: str) -> RegistryEntry:
        row = conn.execute(_ENTRIES, ([model_id],), binary=True).fetchone()
        return RegistryEntry(model_id) if row is None else _entry(row)
