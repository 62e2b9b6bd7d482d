"""A model cache bounded in bytes, so predictions never load a model from storage per request."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlgate.metrics import MODEL_CACHE_BYTES, MODEL_CACHE_HITS, MODEL_CACHE_MISSES
from mlgate.v1 import models_pb2
from storage.models import ModelRepository
from workers import formats
from workers.imputation import check_imputation

__all__ = ["ModelCache"]


@dataclass
class _Entry:
    record: models_pb2.Model
    estimator: Any
    checked: float


class ModelCache:
    """Least-recently-used models by id, bounded by their artifacts' sizes.

    Concurrent requests for a model that is not cached load it once: the others wait for it.
    A cached model is checked against storage at most every ``revalidate_after`` seconds, so a
    model deleted elsewhere leaves every worker's memory soon after, at the cost of one small
    existence check per model per interval rather than per prediction.
    """

    def __init__(
        self,
        models: ModelRepository,
        max_bytes: int,
        revalidate_after: float = 30.0,
        prepare: Callable[[Any], object] | None = None,
    ) -> None:
        self._models = models
        # Runs once on each loaded estimator before any request uses it.
        self._prepare = prepare
        self._max_bytes = max_bytes
        self._revalidate_after = revalidate_after
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._loading: dict[str, threading.Lock] = {}
        self._bytes = 0
        self.loads = 0

    def get(self, model_id: str, sha256: str = "") -> tuple[models_pb2.Model, Any]:
        """The record and estimator; ``sha256``, when given, must match the cached artifact.
        Raises NotFound for a model that does not exist (any more)."""
        with self._lock:
            entry = self._fresh(model_id, sha256)
        if entry is not None and time.monotonic() - entry.checked > self._revalidate_after:
            if self._models.exists(model_id):
                entry.checked = time.monotonic()
            else:
                self.evict(model_id)
                entry = None
        if entry is not None:
            MODEL_CACHE_HITS.inc()
            return entry.record, entry.estimator
        with self._lock:
            gate = self._loading.setdefault(model_id, threading.Lock())
        with gate:
            with self._lock:
                entry = self._fresh(model_id, sha256)
                if entry is not None:
                    MODEL_CACHE_HITS.inc()  # another request loaded it meanwhile
                    return entry.record, entry.estimator
            MODEL_CACHE_MISSES.inc()
            record, estimator = formats.load(self._models, model_id)
            check_imputation(record)
            if self._prepare is not None:
                self._prepare(estimator)
            with self._lock:
                self.loads += 1
                self._loading.pop(model_id, None)
                self._put(model_id, _Entry(record, estimator, time.monotonic()))
            return record, estimator

    def _fresh(self, model_id: str, sha256: str) -> _Entry | None:
        entry = self._entries.get(model_id)
        if entry is None:
            return None
        if sha256 and entry.record.sha256 != sha256:
            self._drop(model_id)
            return None
        self._entries.move_to_end(model_id)
        return entry

    def _put(self, model_id: str, entry: _Entry) -> None:
        self._drop(model_id)
        self._entries[model_id] = entry
        self._bytes += entry.record.size_bytes
        MODEL_CACHE_BYTES.inc(entry.record.size_bytes)
        # Keep at least the newest model, even one larger than the whole budget.
        while self._bytes > self._max_bytes and len(self._entries) > 1:
            self._drop(next(iter(self._entries)))

    def _drop(self, model_id: str) -> None:
        entry = self._entries.pop(model_id, None)
        if entry is not None:
            self._bytes -= entry.record.size_bytes
            MODEL_CACHE_BYTES.dec(entry.record.size_bytes)

    def evict(self, model_id: str) -> None:
        with self._lock:
            self._drop(model_id)

    def __contains__(self, model_id: str) -> bool:
        with self._lock:
            return model_id in self._entries

    @property
    def size_bytes(self) -> int:
        return self._bytes
