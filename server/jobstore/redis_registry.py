"""The model registry in the Redis job store, shared by every gateway on it.

Keys, under the job store's namespace:

    {ns}:registry:name:{name}            hash: "last" -> last version given; "{version}" -> model id
    {ns}:registry:name:{name}:latest     sorted set: model ids scored by version
    {ns}:registry:name:{name}:aliases    hash: alias -> "{version} {model id}", or for a weighted
                                         alias or one with a shadow, JSON: version, model_id,
                                         routes [[version, weight, model id], ...],
                                         shadow_version, shadow_model_id
    {ns}:registry:name:{name}            ... and "owner" -> the token that claimed the name
    {ns}:registry:model:{id}             hash: name, version, description, tags (JSON), owner,
                                         created (ns)
    {ns}:registry:models                 sorted set, the index: "{created ns, 20 digits}:{id}",
                                         all at score 0, so a page is one ZREVRANGEBYLEX
    {ns}:registry:adopted                set once the models stored before the index are in it

An alias stores its version's model id beside the version (and its routes' and shadow's), so
resolving it is one read and changing it one write: safe because a version's model never changes
and deleting a version deletes the aliases that use it with it.
Every write runs under WATCH of the keys it read, like the job records, so concurrent gateways
allocate distinct consecutive versions and never half-apply a change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

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

__all__ = ["RedisModelRegistry"]

T = TypeVar("T")
Call = Callable[..., Any]
Transact = Callable[[str, Callable[[Pipeline], T]], T]
QueuedWrite = Callable[[Pipeline], None]
# Adopt one stored model: index it unless its entry has a created time (it is indexed already).
# KEYS: the model's hash, the index; ARGV: created ns, its index member.
_ADOPT = """
if redis.call('HSETNX', KEYS[1], 'created', ARGV[1]) == 1 then
    redis.call('ZADD', KEYS[2], 0, ARGV[2])
end
"""


def _member(model_id: str, created_ns: int) -> str:
    return f"{created_ns:020d}:{model_id}"


class _Keys:
    def __init__(self, namespace: str) -> None:
        self.ns = f"{namespace}:registry"

    def name(self, name: str) -> str:
        return f"{self.ns}:name:{name}"

    def latest(self, name: str) -> str:
        return f"{self.ns}:name:{name}:latest"

    def aliases(self, name: str) -> str:
        return f"{self.ns}:name:{name}:aliases"

    def of_name(self, name: str) -> list[str]:
        return [self.name(name), self.latest(name), self.aliases(name)]

    def model(self, model_id: str) -> str:
        return f"{self.ns}:model:{model_id}"

    @property
    def models(self) -> str:
        return f"{self.ns}:models"

    @property
    def adopted(self) -> str:
        return f"{self.ns}:adopted"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _alias_target(raw: Any, name: str = "") -> Target:
    text = _text(raw)
    if text.startswith("{"):
        found = json.loads(text)
        return Target(
            found["model_id"],
            name,
            found["version"],
            tuple(Route(v, w, m) for v, w, m in found["routes"]),
            found["shadow_version"],
            found["shadow_model_id"],
        )
    version, model_id = text.split(" ", 1)
    return Target(model_id, name, int(version))


def _alias_value(target: Target) -> str:
    if not target.routes and not target.shadow_version:
        return f"{target.version} {target.model_id}"
    routes = [[r.version, r.weight, r.model_id] for r in target.routes]
    return json.dumps(
        {
            "version": target.version,
            "model_id": target.model_id,
            "routes": routes,
            "shadow_version": target.shadow_version,
            "shadow_model_id": target.shadow_model_id,
        }
    )


def _uses(target: Target) -> set[int]:
    """The versions an alias points at, routes to or shadows to."""
    return {target.version, target.shadow_version, *(r.version for r in target.routes)} - {0}


class RedisModelRegistry(ModelRegistry):
    """Uses the job store's client, its error translation (``call``) and its WATCH loop
    (``transact``)."""

    def __init__(
        self, client: redis.Redis, namespace: str, call: Call, transact: Transact[Any]
    ) -> None:
        self._client = client
        self._keys = _Keys(namespace)
        self._call = call
        self._transact = transact
        self._adopt = client.register_script(_ADOPT)

    def prepare_registration(self, pipe: Pipeline, job: jobs_pb2.Job) -> QueuedWrite | None:
        """Inside the store's transaction that records ``job`` SUCCEEDED, before MULTI: watch and
        read the model and its name, stamp the job with its version, and return the writes to
        queue."""
        found = to_register(job)
        if found is None:
            return None
        model_id, name = found.model_id, found.name
        model_key = self._keys.model(model_id)
        pipe.watch(model_key)  # type: ignore[no-untyped-call]
        if name:
            pipe.watch(self._keys.name(name))  # type: ignore[no-untyped-call]
        adopted_at: Any = pipe.hget(model_key, "created")
        fields: dict[FieldT, EncodableT] = {"owner": found.owner, "created": found.created_ns}
        names: dict[FieldT, EncodableT] = {}
        if name:
            last: Any = pipe.hget(self._keys.name(name), "last")
            version = int(last or 0) + 1
            stamp_version(job, name, version)
            fields |= {"name": name, "version": version}
            names = {"last": version, str(version): model_id}
            if last is None:  # registered without a claim: the first version's owner has it
                names["owner"] = found.owner

        def write(queued: Pipeline) -> None:
            if adopted_at is not None:  # adopted before its job was recorded
                queued.zrem(self._keys.models, _member(model_id, int(adopted_at)))
            queued.hset(model_key, mapping=fields)
            queued.zadd(self._keys.models, {_member(model_id, found.created_ns): 0})
            if name:
                queued.hset(self._keys.name(name), mapping=names)
                queued.zadd(self._keys.latest(name), {model_id: fields["version"]})

        return write

    # -- reads -------------------------------------------------------------------------------

    def target(self, ref: ModelRef) -> Target:
        if ref.model_id:
            return Target(ref.model_id)
        found: Any
        if ref.alias:
            found = self._call(self._client.hget, self._keys.aliases(ref.name), ref.alias)
            if found is not None:
                return _alias_target(found, ref.name)
        elif ref.version:
            found = self._call(self._client.hget, self._keys.name(ref.name), str(ref.version))
            if found is not None:
                return Target(_text(found), ref.name, ref.version)
        else:
            found = self._call(
                self._client.zrevrange, self._keys.latest(ref.name), 0, 0, withscores=True
            )
            if found:
                return Target(_text(found[0][0]), ref.name, int(found[0][1]))
        exists = self._call(self._client.exists, self._keys.name(ref.name))
        raise unknown(ref, bool(exists))

    def entries(self, model_ids: Sequence[str]) -> dict[str, RegistryEntry]:
        if not model_ids:
            return {}
        with self._client.pipeline(transaction=False) as pipe:
            for model_id in model_ids:
                pipe.hgetall(self._keys.model(model_id))
            rows: Any = self._call(pipe.execute)
        fields = [{_text(k): _text(v) for k, v in row.items()} for row in rows]
        names = sorted({row["name"] for row in fields if row.get("name")})
        aliases: dict[tuple[str, int], list[str]] = {}
        if names:
            with self._client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(self._keys.aliases(name))
                listed: Any = self._call(pipe.execute)
            for name, table in zip(names, listed, strict=True):
                for alias, target in table.items():
                    for version in _uses(_alias_target(target)):
                        aliases.setdefault((name, version), []).append(_text(alias))
        return {
            model_id: self._entry(model_id, row, aliases)
            for model_id, row in zip(model_ids, fields, strict=True)
        }

    @staticmethod
    def _entry(
        model_id: str, row: Mapping[str, str], aliases: Mapping[tuple[str, int], list[str]]
    ) -> RegistryEntry:
        name, version = row.get("name", ""), int(row.get("version", 0))
        return RegistryEntry(
            model_id,
            name,
            version,
            tuple(sorted(aliases.get((name, version), ()))),
            row.get("description", ""),
            json.loads(row.get("tags", "{}")),
            row.get("owner", ""),
            int(row.get("created", 0)),
        )

    def versions(self, name: str) -> list[RegistryEntry]:
        ids: Any = self._call(self._client.zrevrange, self._keys.latest(name), 0, -1)
        return self._in_order([_text(model_id) for model_id in ids])

    def _in_order(self, model_ids: list[str]) -> list[RegistryEntry]:
        found = self.entries(model_ids)
        return [found[model_id] for model_id in model_ids]

    def page(self, limit: int, before: tuple[int, str] | None) -> list[RegistryEntry]:
        upper = "+" if before is None else "(" + _member(before[1], before[0])
        members: Any = self._call(
            self._client.zrevrangebylex, self._keys.models, upper, "-", start=0, num=limit
        )
        return self._in_order([_text(m).split(":", 1)[1] for m in members])

    def claim_name(self, name: str, owner: str) -> str:
        key = self._keys.name(name)

        def write(pipe: Pipeline) -> str:
            if pipe.exists(key):
                holder: Any = pipe.hget(key, "owner")
                return _text(holder) if holder is not None else ""
            pipe.multi()
            pipe.hset(key, mapping={"last": 0, "owner": owner})
            return owner

        holder: str = self._call(self._transact, key, write)
        return holder

    def adopted(self) -> bool:
        return bool(self._call(self._client.exists, self._keys.adopted))

    def adopt(self, stored: Sequence[tuple[str, int]]) -> None:
        with self._client.pipeline(transaction=False) as pipe:
            for model_id, created_ns in stored:
                keys = [self._keys.model(model_id), self._keys.models]
                self._adopt(keys, [created_ns, _member(model_id, created_ns)], client=pipe)
            pipe.set(self._keys.adopted, 1)
            self._call(pipe.execute)

    # -- writes ------------------------------------------------------------------------------

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        routes: Sequence[Route] = (),
        shadow_version: int = 0,
    ) -> AliasChange:
        def write(pipe: Pipeline) -> AliasChange:
            pipe.watch(*self._keys.of_name(name))  # type: ignore[no-untyped-call]

            def model_of(number: int) -> str:
                model_id: Any = pipe.hget(self._keys.name(name), str(number))
                if model_id is None:
                    exists = pipe.exists(self._keys.name(name))
                    raise unknown(ModelRef(name=name, version=number), bool(exists))
                return _text(model_id)

            routed = tuple(Route(r.version, r.weight, model_of(r.version)) for r in ordered(routes))
            top = primary(routed).version if routed else version
            shadow_id = model_of(shadow_version) if shadow_version else ""
            target = Target(model_of(top), name, top, routed, shadow_version, shadow_id)
            previous: Any = pipe.hget(self._keys.aliases(name), alias)
            pipe.multi()
            pipe.hset(self._keys.aliases(name), alias, _alias_value(target))
            before = _alias_target(previous).version if previous is not None else 0
            return AliasChange(
                name, alias, top, target.model_id, before, routed, shadow_version, shadow_id
            )

        change: AliasChange = self._call(self._transact, self._keys.name(name), write)
        return change

    def delete_alias(self, name: str, alias: str) -> None:
        deleted = self._call(self._client.hdel, self._keys.aliases(name), alias)
        if not deleted:
            raise NotFound(f"model {name!r} has no alias {alias!r}")

    def update(
        self,
        model_id: str,
        description: str | None,
        set_tags: Mapping[str, str],
        remove_tags: Sequence[str],
    ) -> RegistryEntry:
        key = self._keys.model(model_id)

        def write(pipe: Pipeline) -> None:
            row: Any = pipe.hgetall(key)
            current = {_text(k): _text(v) for k, v in row.items()}
            tags = merge_tags(json.loads(current.get("tags", "{}")), set_tags, remove_tags)
            changes = {"tags": json.dumps(tags, sort_keys=True)}
            if description is not None:
                changes["description"] = description
            pipe.multi()
            pipe.hset(key, mapping=changes)  # type: ignore[arg-type]

        self._call(self._transact, key, write)
        return self.entry(model_id)

    def forget(self, model_id: str, *, force: bool) -> RegistryEntry:
        key = self._keys.model(model_id)

        def write(pipe: Pipeline) -> RegistryEntry:
            row: Any = pipe.hgetall(key)
            current = {_text(k): _text(v) for k, v in row.items()}
            name = current.get("name", "")
            pointing: list[str] = []
            if name:
                pipe.watch(*self._keys.of_name(name))  # type: ignore[no-untyped-call]
                table: Any = pipe.hgetall(self._keys.aliases(name))
                version = int(current["version"])
                pointing = sorted(
                    _text(alias)
                    for alias, target in table.items()
                    if version in _uses(_alias_target(target))
                )
                if pointing and not force:
                    raise aliased(model_id, name, version, pointing)
            pipe.multi()
            pipe.delete(key)
            if "created" in current:
                pipe.zrem(self._keys.models, _member(model_id, int(current["created"])))
            if name:
                pipe.hdel(self._keys.name(name), current["version"])
                pipe.zrem(self._keys.latest(name), model_id)
                if pointing:
                    pipe.hdel(self._keys.aliases(name), *pointing)
            return self._entry(
                model_id, current, {(name, int(current.get("version", 0))): pointing}
            )

        entry: RegistryEntry = self._call(self._transact, key, write)
        return entry
