"""Models as the gateway sees them: references resolved through the registry in the job store,
records read from storage and joined with their registry entries (name, version, aliases,
description, tags).

``ModelCatalog.resolve`` is the one place a reference becomes a model id; every RPC that takes a
model calls it, and so must any future one (an inference protocol's ModelInfer included). It
reads the job store each time, uncached: an alias moved takes effect for the very next request on
every gateway, and workers only ever see ids. The serving paths call ``route`` instead, which
also draws a weighted alias's version (``server.routing``) and says which version answers.

The catalog applies ``server.ownership``'s rule to every model it hands out or changes: records are
shown as the caller may see them, and exporting, updating, deleting and adding a version to a
name need the owner or admin. Listing pages through the registry's index and reads only the
page's manifests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import BinaryIO

from mlgate.errors import InvalidField, NotFound
from mlgate.refs import ModelRef, check_alias, check_model_name, parse_ref
from mlgate.v1 import models_pb2
from server.auth import current_caller
from server.jobstore.registry import (
    MAX_DESCRIPTION,
    AliasChange,
    ModelRegistry,
    RegistryEntry,
)
from server.manifests import ManifestCache
from server.ownership import check_owner, visible_model
from server.paging import decode_page_token, encode_page_token, paginate
from server.routing import Routed, alias_message, check_routes, check_routing_key, routed
from storage.errors import IntegrityError
from storage.models import ModelRepository

__all__ = ["ModelCatalog", "with_entry"]

log = logging.getLogger(__name__)
# Model ids whose names and versions are remembered; past this the memory starts again.
_IDENTITIES_KEPT = 10_000


def with_entry(record: models_pb2.Model, entry: RegistryEntry) -> models_pb2.Model:
    """A copy of the stored record with the registry's view of it."""
    joined = models_pb2.Model()
    joined.CopyFrom(record)
    joined.name = entry.name
    joined.version = entry.version
    joined.aliases[:] = entry.aliases
    joined.description = entry.description
    joined.tags.clear()
    joined.tags.update(entry.tags)
    joined.owner = entry.owner
    return joined


def _named(model_id: str, entry: RegistryEntry) -> str:
    """How messages name a model: its id, and its version of its name if it has one."""
    return f"model {entry.name}/{entry.version} ({model_id})" if entry.name else f"model {model_id}"


class ModelCatalog:
    """The models the gateway serves. Coroutines: blocking reads run on threads."""

    def __init__(
        self, registry: ModelRegistry, models: ModelRepository, manifests: ManifestCache
    ) -> None:
        self._registry = registry
        self._models = models
        self._manifests = manifests
        self._adopted = False
        self._adopting = threading.Lock()
        self._identities: dict[str, tuple[str, int]] = {}

    async def resolve(self, text: str, field: str = "model_id") -> str:
        """The id of the model a reference means now. Raises InvalidField (naming ``field``)
        for a malformed reference, NotFound for an unknown name, version or alias."""
        return await self.resolve_ref(parse_ref(text, field))

    async def resolve_ref(self, ref: ModelRef) -> str:
        if ref.model_id:
            return ref.model_id
        return await asyncio.to_thread(self._registry.resolve, ref)

    async def route(self, reference: str, routing_key: str = "", field: str = "model_id") -> Routed:
        """The model that answers a request for ``reference`` now: for a weighted alias, a
        version drawn by weight, or the one ``routing_key`` hashes to. One read of the job
        store for a name reference; none for an id whose name was read before."""
        return await self.route_ref(parse_ref(reference, field), routing_key)

    async def route_ref(self, ref: ModelRef, routing_key: str = "") -> Routed:
        check_routing_key(routing_key)
        if ref.model_id:
            name, version = await self._identity(ref.model_id)
            return Routed(ref.model_id, name, version)
        target = await asyncio.to_thread(self._registry.target, ref)
        return routed(target, ref.alias, routing_key)

    async def _identity(self, model_id: str) -> tuple[str, int]:
        # A model's name and version never change (numbers are never reused): read once per id.
        known = self._identities.get(model_id)
        if known is None:
            entry = await asyncio.to_thread(self._registry.entry, model_id)
            known = (entry.name, entry.version)
            if len(self._identities) >= _IDENTITIES_KEPT:
                self._identities.clear()
            self._identities[model_id] = known
        return known

    async def version_of(self, model_id: str) -> int:
        """The version of its name the model is; 0 for a model without a name."""
        return (await asyncio.to_thread(self._registry.entry, model_id)).version

    async def version_numbers(self, name: str) -> list[int]:
        """Every version registered under ``name``, lowest first."""
        entries = await asyncio.to_thread(self._registry.versions, name)
        return sorted(entry.version for entry in entries)

    async def manifest(self, model_id: str) -> models_pb2.Model:
        """The stored record, from the short-lived cache the hot prediction path uses."""
        return await self._manifests.get(model_id)

    async def get(self, text: str) -> models_pb2.Model:
        """The model as the caller may see it; through an alias, with the alias's routes."""
        ref = parse_ref(text, "model_id")
        if not ref.alias:
            model_id = await self.resolve_ref(ref)
            return visible_model(await asyncio.to_thread(self._joined, model_id))
        target = await asyncio.to_thread(self._registry.target, ref)
        model = visible_model(await asyncio.to_thread(self._joined, target.model_id))
        model.through_alias.CopyFrom(alias_message(ref.alias, target))
        return model

    def _joined(self, model_id: str) -> models_pb2.Model:
        return with_entry(self._models.get(model_id), self._registry.entry(model_id))

    async def list_page(
        self, name: str, page_size: int, page_token: str
    ) -> tuple[list[models_pb2.Model], str]:
        """Every model newest first; or, with ``name``, its versions highest first; each as the
        caller may see it."""
        if name:
            check_model_name(name, "name")
            found, token = await asyncio.to_thread(self._list_versions, name, page_size, page_token)
        else:
            found, token = await asyncio.to_thread(self._list_all, page_size, page_token)
        return [visible_model(model) for model in found], token

    def _list_all(self, page_size: int, page_token: str) -> tuple[list[models_pb2.Model], str]:
        before = decode_page_token(page_token) if page_token else None
        self._adopt_once()
        entries = self._registry.page(page_size + 1, before)
        token = ""
        if len(entries) > page_size:
            entries = entries[:page_size]
            token = encode_page_token(entries[-1].created_ns, entries[-1].model_id)
        return self._records(entries, "listing models"), token

    def _adopt_once(self) -> None:
        """Put the models stored before the registry indexed them into its index, once per job
        store (reading every manifest that one time)."""
        if self._adopted:
            return
        with self._adopting:
            if not self._adopted and not self._registry.adopted():
                stored = self._models.list()
                self._registry.adopt([(m.id, m.create_time.ToNanoseconds()) for m in stored])
                log.info("indexed %d models stored before the model index", len(stored))
            self._adopted = True

    def _records(self, entries: Iterable[RegistryEntry], doing: str) -> list[models_pb2.Model]:
        """The entries' models, joined; one deleted meanwhile or unreadable is left out."""
        found = []
        for entry in entries:
            try:
                found.append(with_entry(self._models.get(entry.model_id), entry))
            except NotFound:
                continue  # deleted between the registry read and this one
            except IntegrityError as exc:
                # One damaged manifest must not hide every other model; GetModel reports it.
                log.warning("%s: skipped %s: %s", doing, entry.model_id, exc)
        return found

    def _list_versions(
        self, name: str, page_size: int, page_token: str
    ) -> tuple[list[models_pb2.Model], str]:
        versions = self._registry.versions(name)
        page, token = paginate(versions, lambda e: (e.version, e.model_id), page_size, page_token)
        return self._records(page, f"listing {name}"), token

    async def claim(self, name: str) -> None:
        """Claim ``name`` for the caller if nobody has; ``PermissionDenied`` if it is another's
        (unless the caller is admin). Training with a name calls this before it is accepted."""
        check_model_name(name)
        caller = current_caller()
        if caller is None:
            return  # an open gateway: names are nobody's
        holder = await asyncio.to_thread(self._registry.claim_name, name, caller.name)
        check_owner(holder, "adding versions to", f"model name {name!r}")

    def _owned(self, model_id: str, action: str) -> RegistryEntry:
        """The model's entry, if the caller may do ``action`` to it; NotFound for no model."""
        entry = self._registry.entry(model_id)
        if not entry.name and not entry.created_ns and not self._models.exists(model_id):
            raise NotFound(f"model {model_id} does not exist")
        check_owner(entry.owner, action, _named(model_id, entry))
        return entry

    async def update(
        self,
        text: str,
        description: str | None,
        set_tags: Mapping[str, str],
        remove_tags: Sequence[str],
    ) -> models_pb2.Model:
        if description is not None and len(description) > MAX_DESCRIPTION:
            raise InvalidField("description", f"is over {MAX_DESCRIPTION} characters")
        model_id = await self.resolve(text)

        def update() -> models_pb2.Model:
            self._owned(model_id, "updating")
            record = self._models.get(model_id)
            entry = self._registry.update(model_id, description, set_tags, remove_tags)
            return with_entry(record, entry)

        return await asyncio.to_thread(update)

    async def delete(self, text: str, *, force: bool) -> RegistryEntry:
        """Delete the model and its version of its name; the entry it had (its removed aliases).
        The registry goes first, so the model stops resolving before its bytes go."""
        model_id = await self.resolve(text)

        def delete() -> RegistryEntry:
            self._owned(model_id, "deleting")
            stored = self._models.exists(model_id)
            entry = self._registry.forget(model_id, force=force)
            if not stored and not entry.name:
                raise NotFound(f"model {model_id} does not exist")
            if stored:
                # NotFound: deleted through another gateway meanwhile.
                with contextlib.suppress(NotFound):
                    self._models.delete(model_id)
            return entry

        entry = await asyncio.to_thread(delete)
        self._manifests.forget(model_id)
        return entry

    async def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        routes: Sequence[tuple[int, int]] = (),
        shadow_version: int = 0,
    ) -> AliasChange:
        """Point ``name@alias`` at one version or at weighted ``routes`` ((version, weight)
        pairs), with an optional shadow version; see ``server.routing.check_routes``."""
        check_model_name(name, "name")
        check_alias(alias)
        checked = check_routes(version, routes, shadow_version)
        if checked or shadow_version:
            await self._check_versions(name, [number for number, _ in routes], shadow_version)
        return await asyncio.to_thread(
            self._registry.set_alias, name, alias, version, checked, shadow_version
        )

    async def _check_versions(self, name: str, given: Sequence[int], shadow: int) -> None:
        """INVALID_ARGUMENT naming the route or shadow whose version is not registered (the
        registry checks again as it writes, for one deleted meanwhile)."""
        existing = set(await self.version_numbers(name))
        if not existing:
            return  # the registry's NOT_FOUND names the unknown name
        for i, number in enumerate(given):
            if number not in existing:
                raise InvalidField(
                    f"routes[{i}].version", f"model {name!r} has no version {number}"
                )
        if shadow and shadow not in existing:
            raise InvalidField("shadow_version", f"model {name!r} has no version {shadow}")

    async def delete_alias(self, name: str, alias: str) -> None:
        check_model_name(name, "name")
        check_alias(alias)
        await asyncio.to_thread(self._registry.delete_alias, name, alias)

    async def export(self, text: str, target: BinaryIO) -> tuple[models_pb2.Model, str]:
        """Write the model's artifact into ``target`` as stored, checked against its digest;
        the joined record and the artifact's format."""
        model_id = await self.resolve(text)

        def export() -> tuple[models_pb2.Model, str]:
            entry = self._owned(model_id, "exporting")
            record, form = self._models.export(model_id, target)
            return with_entry(record, entry), form

        return await asyncio.to_thread(export)
