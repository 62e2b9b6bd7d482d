"""mlgate's model format: every allowlisted estimator round-trips as data, and nothing else loads.

Each crafted case rewrites a stored artifact and its manifest's digest to match, as someone with
write access to the object store could, so only the format's own checks stand in the way.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from mlgate.estimators import ESTIMATORS
from mlgate.ids import model_id_for_job, new_job_id
from mlgate.v1 import models_pb2
from storage import models
from storage.errors import IntegrityError
from storage.local import LocalObjectStore
from storage.models import ModelRepository
from tests.support.artifacts import artifact_path, replace_artifact
from workers.estimators import build
from workers.formats import arrays, load, save
from workers.formats.vocabulary import RECORDS
from workers.training import _with_encoding

_DATA = {
    "regression": load_diabetes,
    "classification": load_iris,
    "binary": load_breast_cancer,
}
_CASES = [
    (name, task, kind)
    for name, spec in sorted(ESTIMATORS.items())
    for task in spec.classes
    for kind in ([task] if task == "regression" else ["classification", "binary"])
]


def _save(tmp_path: Path, model: Any, X: pd.DataFrame) -> tuple[ModelRepository, str]:
    repo = ModelRepository(LocalObjectStore(tmp_path / "objects"))
    record = models_pb2.Model(id=model_id_for_job(new_job_id()))
    for column in X.columns:
        record.features.add(name=str(column), dtype="numeric")
    return repo, save(repo, record, model).id


@pytest.mark.parametrize(("name", "task", "kind"), _CASES)
def test_every_allowlisted_estimator_round_trips_with_equal_predictions(
    tmp_path: Path, name: str, task: str, kind: str
) -> None:
    X, y = _DATA[kind](return_X_y=True, as_frame=True)
    params = {"max_iter": 3000} if name == "logistic_regression" else {}
    model, _ = build(name, task, params, 0)
    model.fit(X, y)
    repo, model_id = _save(tmp_path, model, X)
    assert (
        json.loads((tmp_path / "objects/models" / model_id / "manifest.json").read_text())["format"]
        == arrays.FORMAT
    )
    _, loaded = load(repo, model_id)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    if hasattr(model, "predict_proba"):
        np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_the_encoding_pipeline_round_trips(tmp_path: Path) -> None:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    X = X.assign(colour=np.where(X["sex"] > 0, "red", "blue"))
    estimator, _ = build("random_forest", "regression", {"n_estimators": 10}, 0)
    model = _with_encoding(estimator, {**{c: "numeric" for c in X.columns}, "colour": "string"})
    model.fit(X, y)
    repo, model_id = _save(tmp_path, model, X)
    _, loaded = load(repo, model_id)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    unseen = X.iloc[:3].assign(colour="green")
    np.testing.assert_array_equal(loaded.predict(unseen), model.predict(unseen))


@pytest.fixture
def stored(tmp_path: Path) -> tuple[ModelRepository, str, Path]:
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model, _ = build("decision_tree", "regression", {"max_depth": 3}, 0)
    repo, model_id = _save(tmp_path, model.fit(X, y), X)
    return repo, model_id, tmp_path / "objects"


def _document(data: bytes) -> tuple[dict[str, Any], bytes]:
    head = len(arrays.MAGIC) + 8
    (length,) = struct.unpack("<Q", data[len(arrays.MAGIC) : head])
    return json.loads(data[head : head + length]), data[head + length :]


def _artifact(document: dict[str, Any], blob: bytes) -> bytes:
    text = json.dumps(document).encode()
    return arrays.MAGIC + struct.pack("<Q", len(text)) + text + blob


def _craft(stored: tuple[ModelRepository, str, Path], change: Any) -> None:
    _, model_id, objects = stored
    document, blob = _document(artifact_path(objects, model_id).read_bytes())
    change(document)
    replace_artifact(objects, model_id, _artifact(document, blob))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        # A class outside the allowlist: named, never imported.
        (lambda d: d["root"].__setitem__("$c", "Popen"), "'Popen' is not allowed"),
        (lambda d: d["root"].__setitem__("$c", "os.system"), "is not allowed"),
        # An attribute that would replace a method of the class.
        (lambda d: d["root"]["d"].__setitem__("predict", "x"), "would replace"),
        (lambda d: d["root"]["d"].__setitem__("__class__", "x"), "invalid attribute"),
        # Python objects inside an array, and arrays that point past the data.
        (lambda d: d["arrays"][0].__setitem__(0, "|O"), "not allowed"),
        (lambda d: d["arrays"][0].__setitem__(2, 10**12), "runs past the data"),
        (lambda d: d["arrays"][0].__setitem__(1, [10**9]), "runs past the data"),
        (lambda d: d["root"]["d"].__setitem__("tree_", {"$a": 10**6}), "outside the table"),
        (lambda d: d["root"]["d"].__setitem__("tree_", {"$what": 1}), "unknown value"),
    ],
)
def test_a_crafted_artifact_is_refused_without_running_anything(
    stored: tuple[ModelRepository, str, Path], change: Any, reason: str
) -> None:
    _craft(stored, change)
    repo, model_id, _ = stored
    with pytest.raises(IntegrityError, match=reason):
        load(repo, model_id)


def test_a_tree_whose_child_points_outside_is_refused(
    stored: tuple[ModelRepository, str, Path],
) -> None:
    repo, model_id, objects = stored
    document, blob = _document(artifact_path(objects, model_id).read_bytes())
    nodes_ref = document["root"]["d"]["tree_"]["nodes"]["$a"]
    _, shape, offset = document["arrays"][nodes_ref]
    nodes = np.frombuffer(blob, dtype=RECORDS["node"], count=shape[0], offset=offset).copy()
    nodes["left_child"][0] = 10**9
    crafted = bytearray(blob)
    crafted[offset : offset + nodes.nbytes] = nodes.tobytes()
    replace_artifact(objects, model_id, _artifact(document, bytes(crafted)))
    with pytest.raises(IntegrityError, match="outside the tree"):
        load(repo, model_id)


def test_bytes_that_are_not_an_artifact_are_refused(
    stored: tuple[ModelRepository, str, Path],
) -> None:
    repo, model_id, objects = stored
    replace_artifact(objects, model_id, arrays.MAGIC + struct.pack("<Q", 10**9) + b"{}")
    with pytest.raises(IntegrityError, match="runs past the artifact"):
        load(repo, model_id)


def test_the_manifest_names_the_format_the_artifact_has() -> None:
    assert arrays.FORMAT == models.ARRAYS


def test_an_object_outside_the_format_is_saved_with_skops(tmp_path: Path) -> None:
    from sklearn.linear_model import Lasso

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    with pytest.raises(arrays.Unencodable, match="Lasso"):
        arrays.encode(Lasso().fit(X, y))
