"""Models as the gateway sees them: references resolved through the registry in the job store,
records read from storage and joined with their registry entries (name, version, aliases,
description, tags).

``ModelCatalog.resolve`` is the one place a reference becomes a model id; every RPC that takes a
model calls it, and so must any future one (an inference protocol's ModelInfer included). It
reads the job store each time, uncached: an alias moved takes effect for the very next request on
every gateway, and workers only ever see ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import BinaryIO

from mlgate.errors import InvalidArgument, NotFound
from mlgate.refs import ModelRef, check_alias, check_model_name, check_version, parse_ref
from mlgate.v1 import models_pb2
from server.jobstore.registry import MAX_DESCRIPTION, AliasChange, ModelRegistry, RegistryEntry
from server.manifests import ManifestCache
from server.paging import paginate
from storage.errors import IntegrityError
from storage.models import ModelRepository

__all__ = ["ModelCatalog", "with_entry"]

log = logging.getLogger(__name__)


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
    return joined


class ModelCatalog:
    """The models the gateway serves. Coroutines: blocking reads run on threads."""

    def __init__(
        self, registry: ModelRegistry, models: ModelRepository, manifests: ManifestCache
    ) -> None:
        self._registry = registry
        self._models = models
        self._manifests = manifests

    async def resolve(self, text: str, field: str = "model_id") -> str:
        """The id of the model a reference means now. Raises InvalidArgument (naming ``field``)
        for a malformed reference, NotFound for an unknown name, version or alias."""
        return await self.resolve_ref(parse_ref(text, field))

    async def resolve_ref(self, ref: ModelRef) -> str:
        if ref.model_id:
            return ref.model_id
        return await asyncio.to_thread(self._registry.resolve, ref)

    async def manifest(self, model_id: str) -> models_pb2.Model:
        """The stored record, from the short-lived cache the hot prediction path uses."""
        return await self._manifests.get(model_id)

    async def get(self, text: str) -> models_pb2.Model:
        model_id = await self.resolve(text)
        return await asyncio.to_thread(self._joined, model_id)

    def _joined(self, model_id: str) -> models_pb2.Model:
        return with_entry(self._models.get(model_id), self._registry.entry(model_id))

    async def list_page(
        self, name: str, page_size: int, page_token: str
    ) -> tuple[list[models_pb2.Model], str]:
        """Every model newest first; or, with ``name``, its versions highest first."""
        if name:
            check_model_name(name, "name")
            return await asyncio.to_thread(self._list_versions, name, page_size, page_token)
        return await asyncio.to_thread(self._list_all, page_size, page_token)

    def _list_all(self, page_size: int, page_token: str) -> tuple[list[models_pb2.Model], str]:
        records = self._models.list()
        page, token = paginate(
            records, lambda m: (m.create_time.ToNanoseconds(), m.id), page_size, page_token
        )
        entries = self._registry.entries([m.id for m in page])
        return [with_entry(m, entries[m.id]) for m in page], token

    def _list_versions(
        self, name: str, page_size: int, page_token: str
    ) -> tuple[list[models_pb2.Model], str]:
        versions = self._registry.versions(name)
        page, token = paginate(versions, lambda e: (e.version, e.model_id), page_size, page_token)
        found = []
        for entry in page:
            try:
                found.append(with_entry(self._models.get(entry.model_id), entry))
            except NotFound:
                continue  # deleted between the registry read and this one
            except IntegrityError as exc:
                log.warning("listing %s: skipped %s: %s", name, entry.model_id, exc)
        return found, token

    async def update(
        self,
        text: str,
        description: str | None,
        set_tags: Mapping[str, str],
        remove_tags: Sequence[str],
    ) -> models_pb2.Model:
        if description is not None and len(description) > MAX_DESCRIPTION:
            raise InvalidArgument("description", f"is over {MAX_DESCRIPTION} characters")
        model_id = await self.resolve(text)

        def update() -> models_pb2.Model:
            record = self._models.get(model_id)
            entry = self._registry.update(model_id, description, set_tags, remove_tags)
            return with_entry(record, entry)

        return await asyncio.to_thread(update)

    async def delete(self, text: str, *, force: bool) -> RegistryEntry:
        """Delete the model and its version of its name; the entry it had (its removed aliases).
        The registry goes first, so the model stops resolving before its bytes go."""
        model_id = await self.resolve(text)

        def delete() -> RegistryEntry:
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

    async def set_alias(self, name: str, alias: str, version: int) -> AliasChange:
        check_model_name(name, "name")
        check_alias(alias)
        check_version(version)
        return await asyncio.to_thread(self._registry.set_alias, name, alias, version)

    async def delete_alias(self, name: str, alias: str) -> None:
        check_model_name(name, "name")
        check_alias(alias)
        await asyncio.to_thread(self._registry.delete_alias, name, alias)

    async def export(self, text: str, target: BinaryIO) -> tuple[models_pb2.Model, str]:
        """Write the model's artifact into ``target`` as stored, checked against its digest;
        the joined record and the artifact's format."""
        model_id = await self.resolve(text)

        def export() -> tuple[models_pb2.Model, str]:
            record, form = self._models.export(model_id, target)
            return with_entry(record, self._registry.entry(model_id)), form

        return await asyncio.to_thread(export)
