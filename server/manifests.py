"""The gateway's short-lived cache of model records, used to validate predictions at the edge."""

from __future__ import annotations

import asyncio
import time

from mlgate.v1 import models_pb2
from storage.models import ModelRepository

__all__ = ["ManifestCache"]


class ManifestCache:
    """Model records by id, kept for ``ttl`` seconds so a model deleted through another gateway
    is refused here soon after, while hot models cost no storage read per prediction."""

    def __init__(self, models: ModelRepository, ttl: float = 5.0, size: int = 1024) -> None:
        self._models = models
        self._ttl = ttl
        self._size = size
        self._entries: dict[str, tuple[float, models_pb2.Model]] = {}

    async def get(self, model_id: str) -> models_pb2.Model:
        """The record; raises NotFound."""
        now = time.monotonic()
        entry = self._entries.get(model_id)
        if entry is not None and now - entry[0] < self._ttl:
            return entry[1]
        record = await asyncio.to_thread(self._models.get, model_id)
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[model_id] = (now, record)
        return record

    def forget(self, model_id: str) -> None:
        self._entries.pop(model_id, None)
