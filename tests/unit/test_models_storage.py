"""Model artifacts: safe serialisation, integrity checks and the trusted-type allowlist."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import skops.io as sio
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from mlgate.errors import FailedPrecondition, NotFound
from mlgate.estimators import ESTIMATORS, REGRESSION
from mlgate.ids import model_id_for_job, new_job_id
from mlgate.v1 import models_pb2
from storage.errors import IntegrityError
from storage.local import LocalObjectStore
from storage.models import ModelRepository
from tests.support.artifacts import artifact_path, replace_artifact
from workers.cache import ModelCache
from workers.estimators import build
from workers.formats import load, save
from workers.formats.skops_format import TRUSTED_TYPES
from workers.training import _with_encoding


@pytest.fixture
def repo(tmp_path: Path) -> ModelRepository:
    return ModelRepository(LocalObjectStore(tmp_path / "objects"))


def _fitted(name: str = "random_forest") -> object:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    estimator, _ = build(name, REGRESSION, {"n_estimators": 5} if "forest" in name else {}, 42)
    return estimator.fit(X, y)


def _record() -> models_pb2.Model:
    record = models_pb2.Model(id=model_id_for_job(new_job_id()), estimator="random_forest")
    record.create_time.GetCurrentTime()
    for name in load_diabetes(as_frame=True).data.columns:
        record.features.add(name=str(name), dtype="numeric")
    return record


def test_every_allowlisted_estimator_loads_with_the_trusted_types_only() -> None:
    data = {
        "regression": load_diabetes(return_X_y=True, as_frame=True),
        "classification": load_iris(return_X_y=True, as_frame=True),
        "binary": load_breast_cancer(return_X_y=True, as_frame=True),
    }
    needed: set[str] = set()
    for name, spec in ESTIMATORS.items():
        for task in spec.classes:
            for kind in [task] if task == "regression" else ["classification", "binary"]:
                X, y = data[kind]
                estimator, _ = build(
                    name, task, {"max_iter": 3000} if name == "logistic_regression" else {}, 0
                )
                blob = sio.dumps(estimator.fit(X, y))
                needed |= set(sio.get_untrusted_types(data=blob))
    X, y = data["regression"]
    X = X.assign(colour=["red" if v > 0 else "blue" for v in X["age"]])
    estimator, _ = build("ridge", "regression", {}, 0)
    dtypes = {**{c: "numeric" for c in X.columns}, "colour": "string"}
    needed |= set(
        sio.get_untrusted_types(data=sio.dumps(_with_encoding(estimator, dtypes).fit(X, y)))
    )
    assert needed <= set(TRUSTED_TYPES)


def test_save_then_load_round_trips(repo: ModelRepository) -> None:
    estimator = _fitted()
    saved = save(repo, _record(), estimator)
    loaded_record, loaded = load(repo, saved.id)
    assert loaded_record == saved
    X = load_diabetes(as_frame=True).data.iloc[:3]
    assert list(loaded.predict(X)) == list(estimator.predict(X))  # type: ignore[attr-defined]
    assert [m.id for m in repo.list()] == [saved.id]


def test_tampered_artifact_fails_the_integrity_check(repo: ModelRepository, tmp_path: Path) -> None:
    saved = save(repo, _record(), _fitted())
    artifact = artifact_path(tmp_path / "objects", saved.id)
    blob = bytearray(artifact.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    artifact.write_bytes(bytes(blob))
    with pytest.raises(IntegrityError, match="integrity"):
        load(repo, saved.id)


def test_an_untrusted_type_is_refused_even_with_a_matching_digest(
    repo: ModelRepository, tmp_path: Path
) -> None:
    saved = save(repo, _record(), _fitted())
    # Someone with write access swaps in an artifact holding a type outside the allowlist and
    # rewrites the manifest to match: the digest passes, the allowlist still refuses.
    evil = sio.dumps({"model": pd.Timestamp("2020-01-01")})
    replace_artifact(tmp_path / "objects", saved.id, evil)
    with pytest.raises(IntegrityError, match="does not trust"):
        load(repo, saved.id)


def test_another_sklearn_version_is_a_failed_precondition(
    repo: ModelRepository, tmp_path: Path
) -> None:
    saved = save(repo, _record(), _fitted())
    path = tmp_path / "objects" / "models" / saved.id / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["model"]["sklearnVersion"] = "0.24.2"
    path.write_text(json.dumps(manifest))
    with pytest.raises(FailedPrecondition, match=r"0\.24\.2.*1\."):
        load(repo, saved.id)


def test_missing_manifest_means_no_model(repo: ModelRepository, tmp_path: Path) -> None:
    saved = save(repo, _record(), _fitted())
    (tmp_path / "objects" / "models" / saved.id / "manifest.json").unlink()
    with pytest.raises(NotFound):
        load(repo, saved.id)
    assert repo.list() == []


def test_resaving_a_model_leaves_one_artifact(repo: ModelRepository, tmp_path: Path) -> None:
    record = _record()
    save(repo, record, _fitted("random_forest"))
    second = save(repo, record, _fitted("extra_trees"))
    files = sorted(p.name for p in (tmp_path / "objects" / "models" / record.id).iterdir())
    assert files == sorted([artifact_path(tmp_path / "objects", record.id).name, "manifest.json"])
    assert files[0].startswith(second.sha256)
    repo.delete(record.id)
    assert not (tmp_path / "objects" / "models" / record.id).exists()
    with pytest.raises(NotFound):
        repo.get(record.id)


def test_cache_loads_each_model_once_and_respects_its_byte_bound(repo: ModelRepository) -> None:
    first = save(repo, _record(), _fitted())
    second = save(repo, _record(), _fitted())
    cache = ModelCache(repo, max_bytes=first.size_bytes + second.size_bytes // 2)
    for _ in range(5):
        cache.get(first.id)
    assert cache.loads == 1
    cache.get(second.id)
    assert second.id in cache and first.id not in cache, "least recently used goes first"
    assert cache.size_bytes <= first.size_bytes + second.size_bytes
    # A digest that differs from the cached one (the model was rewritten) forces a reload.
    cache.get(second.id, sha256="0" * 64)
    assert cache.loads == 3


def test_a_deleted_model_leaves_the_cache_at_its_next_check(repo: ModelRepository) -> None:
    saved = save(repo, _record(), _fitted())
    cache = ModelCache(repo, max_bytes=10 * saved.size_bytes, revalidate_after=0.0)
    cache.get(saved.id)
    assert saved.id in cache
    repo.delete(saved.id)
    with pytest.raises(NotFound):
        cache.get(saved.id)
    assert saved.id not in cache
    assert cache.size_bytes == 0
