"""hist_gradient_boosting given ``categorical_features``: its preprocessor is rebuilt on load from
the artifact's categories, and an artifact whose categories or categorical features disagree
with the rest of the model is refused DATA_LOSS. Its function is never stored: a skops artifact
that holds it is refused, as skops' trusted types stay what they were."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

from mlgate.estimators import REGRESSION
from mlgate.ids import model_id_for_job, new_job_id
from mlgate.v1 import models_pb2
from storage.errors import IntegrityError
from storage.local import LocalObjectStore
from storage.models import ARRAYS, SKOPS, Encoded, ModelRepository
from tests.support.artifacts import artifact_path, replace_artifact, rewrite_model
from workers.estimators import build
from workers.formats import arrays, load, save
from workers.formats.skops_format import dumps


def _data() -> tuple[pd.DataFrame, pd.Series]:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X = X.iloc[:, :3].assign(zone=np.digitize(X["bmi"], np.linspace(-0.1, 0.15, 8)).astype(float))
    X.loc[::13, "zone"] = np.nan
    return X, y


def _store(tmp_path: Path, *, form: str = ARRAYS) -> tuple[ModelRepository, str, Any]:
    X, y = _data()
    params = {"max_iter": 5, "categorical_features": ["zone"]}
    estimator, _ = build("hist_gradient_boosting", REGRESSION, params, 0)
    estimator.fit(X, y)
    repo = ModelRepository(LocalObjectStore(tmp_path / "objects"))
    record = models_pb2.Model(id=model_id_for_job(new_job_id()), estimator="hist_gradient_boosting")
    for column in X.columns:
        record.features.add(name=str(column), dtype="numeric")
    if form == SKOPS:
        repo.save_encoded(record, Encoded(SKOPS, dumps(estimator)))
    else:
        assert save(repo, record, estimator)
    return repo, record.id, estimator


def test_a_categorical_model_loads_and_predicts_as_it_was_fitted(tmp_path: Path) -> None:
    repo, model_id, fitted = _store(tmp_path)
    _, loaded = load(repo, model_id)
    rows = _data()[0].iloc[:20].copy()
    rows.loc[3, "zone"] = 99.0  # a zone training never saw
    assert loaded.is_categorical_.tolist() == [False, False, False, True]
    assert np.array_equal(loaded.predict(rows), fitted.predict(rows))


def _categories(change: Callable[[list[np.ndarray]], list[np.ndarray]]) -> Callable[[Any], None]:
    def mutate(model: Any) -> None:
        model._preprocessor.categories_ = change(list(model._preprocessor.categories_))

    return mutate


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (_categories(lambda c: [c[0][::-1]]), "not sorted and distinct"),
        (_categories(lambda c: c + c), "disagree with the categorical features"),
        (_categories(lambda c: [np.array(["a", "b"])]), "not numbers"),
        (_categories(lambda c: [np.arange(300.0)]), "not numbers"),
        (_categories(lambda c: [np.array([0.0, np.inf])]), "not sorted and distinct"),
        (lambda m: setattr(m, "categorical_features", None), "disagree with its hyperparameters"),
        (lambda m: setattr(m, "categorical_features", ["age"]), "disagree with its hyperp"),
        (lambda m: setattr(m, "is_categorical_", ~m.is_categorical_), "disagree with the categ"),
        (lambda m: m._bin_mapper.is_categorical_.fill(0), "not the preprocessor's"),
        (lambda m: setattr(m, "_preprocessor", None), "categorical splits without a preproc"),
    ],
)
def test_a_crafted_categorical_model_is_data_loss(
    tmp_path: Path, mutate: Callable[[Any], None], reason: str
) -> None:
    repo, model_id, _ = _store(tmp_path)
    rewrite_model(tmp_path / "objects", model_id, mutate)
    with pytest.raises(IntegrityError, match=reason):
        load(repo, model_id)


def test_a_preprocessor_of_another_kind_is_data_loss(tmp_path: Path) -> None:
    repo, model_id, _ = _store(tmp_path)
    path = artifact_path(tmp_path / "objects", model_id)
    data = path.read_bytes()
    head = len(arrays.MAGIC) + 8
    (length,) = struct.unpack("<Q", data[len(arrays.MAGIC) : head])
    document = json.loads(data[head : head + length])
    document["root"]["d"]["_preprocessor"]["$c"] = "OneHotEncoder"
    text = json.dumps(document).encode()
    crafted = arrays.MAGIC + struct.pack("<Q", len(text)) + text + data[head + length :]
    replace_artifact(tmp_path / "objects", model_id, crafted)
    with pytest.raises(IntegrityError, match="preprocessor is not mlgate's"):
        load(repo, model_id)


def test_its_function_is_never_loaded_from_skops(tmp_path: Path) -> None:
    repo, model_id, _ = _store(tmp_path, form=SKOPS)
    with pytest.raises(IntegrityError, match=r"does not trust \(functools.partial"):
        load(repo, model_id)
