"""A model cache bounded in bytes, so predictions never load a model from storage per request."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from mlgate.v1 import models_pb2
from storage.models import ModelRepository

__all__ = ["ModelCache"]


class ModelCache:
    """Least-recently-used models by id, bounded by their artifacts' sizes.

    Concurrent requests for a model that is not cached load it once: the others wait for it.
    """

    def __init__(self, models: ModelRepository, max_bytes: int) -> None:
        self._models = models
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[models_pb2.Model, Any]] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}
        self._bytes = 0
        self.loads = 0

    def get(self, model_id: str, sha256: str = "") -> tuple[models_pb2.Model, Any]:
        """The record and estimator; ``sha256``, when given, must match the cached artifact."""
        with self._lock:
            entry = self._fresh(model_id, sha256)
            if entry is not None:
                return entry
            gate = self._loading.setdefault(model_id, threading.Lock())
        with gate:
            with self._lock:
                entry = self._fresh(model_id, sha256)
                if entry is not None:
                    return entry
            record, estimator = self._models.load(model_id)
            with self._lock:
                self.loads += 1
                self._loading.pop(model_id, None)
                self._put(model_id, (record, estimator))
            return record, estimator

    def _fresh(self, model_id: str, sha256: str) -> tuple[models_pb2.Model, Any] | None:
        entry = self._entries.get(model_id)
        if entry is None:
            return None
        if sha256 and entry[0].sha256 != sha256:
            self._drop(model_id)
            return None
        self._entries.move_to_end(model_id)
        return entry

    def _put(self, model_id: str, entry: tuple[models_pb2.Model, Any]) -> None:
        self._drop(model_id)
        self._entries[model_id] = entry
        self._bytes += entry[0].size_bytes
        # Keep at least the newest model, even one larger than the whole budget.
        while self._bytes > self._max_bytes and len(self._entries) > 1:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    def _drop(self, model_id: str) -> None:
        entry = self._entries.pop(model_id, None)
        if entry is not None:
            self._bytes -= entry[0].size_bytes

    def evict(self, model_id: str) -> None:
        with self._lock:
            self._drop(model_id)

    def __contains__(self, model_id: str) -> bool:
        with self._lock:
            return model_id in self._entries

    @property
    def size_bytes(self) -> int:
        return self._bytes
