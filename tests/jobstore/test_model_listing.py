"""ListModels pages through the job store's model index: a page reads the manifests it shows and
no others, however many models there are, on every job store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from mlgate.ids import model_id_for_job
from mlgate.v1 import models_pb2
from server.jobstore.base import JobStore
from server.manifests import ManifestCache
from server.model_catalog import ModelCatalog
from storage.local import LocalObjectStore
from storage.models import ARRAYS, Encoded, ModelRepository
from tests.support.jobstores import StoreFactory, queued_training, success


class _CountingStore(LocalObjectStore):
    """A real local object store that counts the manifests read from it."""

    manifest_reads = 0

    def get(self, key: str) -> bytes:
        if key.endswith("/manifest.json"):
            self.manifest_reads += 1
        return super().get(key)


def _made(store: JobStore, models: ModelRepository, count: int) -> list[str]:
    """``count`` models as training jobs make them, one a millisecond; their ids, oldest first."""
    base = time.time_ns()
    made = []
    for i in range(count):
        job = queued_training(store, "rf" if i % 2 else "", "alice")
        model_id = model_id_for_job(job.id)
        record = models_pb2.Model(id=model_id, job_id=job.id, target="y")
        record.create_time.FromNanoseconds(base + i * 1_000_000)
        models.save_encoded(record, Encoded(ARRAYS, b"an artifact"))
        store.record(success(job, base + i * 1_000_000))
        made.append(model_id)
    return made


@pytest.mark.parametrize("count", [10, 300])
def test_a_page_reads_only_its_own_manifests_whatever_the_number_of_models(
    make_store: StoreFactory, tmp_path: Path, count: int
) -> None:
    objects = _CountingStore(tmp_path / "objects")
    models = ModelRepository(objects)
    store = make_store()
    made = _made(store, models, count)
    # A gateway started now, with a cache too short to hide a read; its first listing adopts
    # what storage held before the index (here, nothing it lacks).
    catalog = ModelCatalog(store.registry, models, ManifestCache(models, ttl=0))
    assert asyncio.run(catalog.list_page("", 1000, ""))[0][0].id == made[-1]

    objects.manifest_reads = 0
    first, _token = asyncio.run(catalog.list_page("", 1, ""))
    assert [m.id for m in first] == [made[-1]]
    assert objects.manifest_reads == 1, "the first page of one reads one manifest"

    # Page after page through the tokens: the whole index, newest first, each page reading the
    # manifests it shows and no others, the last as cheap as the first.
    seen: list[str] = []
    token = ""
    while True:
        objects.manifest_reads = 0
        page, token = asyncio.run(catalog.list_page("", 64, token))
        assert objects.manifest_reads == len(page)
        seen += [m.id for m in page]
        if not token:
            break
    assert seen == made[::-1]
