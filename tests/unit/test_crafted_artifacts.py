"""Artifacts built only from trusted types but crafted to break scikit-learn: refused on load.

Every case stores a real model, rewrites its artifact and the manifest's digest to match, and
expects DATA_LOSS (or RESOURCE_EXHAUSTED past the size limit) from loading, not a crash later.
"""

from __future__ import annotations

import json
import tracemalloc
import zipfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.linear_model import Lasso

from mlgate.errors import ResourceExhausted
from mlgate.estimators import CLASSIFICATION, ESTIMATORS, REGRESSION
from mlgate.ids import model_id_for_job, new_job_id
from mlgate.v1 import models_pb2
from storage.errors import IntegrityError
from storage.local import LocalObjectStore
from storage.models import SKOPS, Encoded, ModelRepository
from tests.support.artifacts import (
    aim_child_outside,
    inflating_zip,
    replace_artifact,
    rewrite_model,
    set_tree_nodes,
    with_schema_value,
)
from workers.estimators import build, sklearn_class
from workers.formats import load, save
from workers.formats.fitted import CHECKED_TYPES
from workers.formats.skops_format import dumps
from workers.training import _with_encoding
from workers.values import plain, values


def _data(task: str) -> tuple[pd.DataFrame, pd.Series]:
    loader = load_diabetes if task == REGRESSION else load_iris
    X, y = loader(return_X_y=True, as_frame=True)
    return X, y


# Small ensembles: the checks' cost and coverage do not depend on the number of trees.
_SMALL = {
    "random_forest": {"n_estimators": 5},
    "extra_trees": {"n_estimators": 5},
    "gradient_boosting": {"n_estimators": 5},
    "hist_gradient_boosting": {"max_iter": 5},
}


def _store(
    tmp_path: Path, name: str, task: str = REGRESSION, *, form: str = "", **params: Any
) -> tuple[ModelRepository, str]:
    """A stored model, in mlgate's format unless ``form`` asks for skops."""
    X, y = _data(task)
    estimator, _ = build(name, task, {**_SMALL.get(name, {}), **params}, 0)
    estimator.fit(X, y)
    repo = ModelRepository(LocalObjectStore(tmp_path / "objects"))
    record = models_pb2.Model(id=model_id_for_job(new_job_id()), estimator=name)
    for column in X.columns:
        record.features.add(name=str(column), dtype="numeric")
    if form == SKOPS:
        record.classes.extend(values([plain(c) for c in getattr(estimator, "classes_", [])]))
        repo.save_encoded(record, Encoded(SKOPS, dumps(estimator)))
    else:
        save(repo, record, estimator)
    return repo, record.id


def test_every_allowlisted_estimator_class_has_a_structure_check() -> None:
    allowlisted = {
        sklearn_class(path) for spec in ESTIMATORS.values() for path in spec.classes.values()
    }
    assert allowlisted == CHECKED_TYPES


@pytest.mark.parametrize("form", ["", SKOPS])  # skops: as earlier versions saved them
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_estimator_mlgate_trains_passes_the_checks(
    tmp_path: Path, name: str, form: str
) -> None:
    for task in ESTIMATORS[name].classes:
        repo, model_id = _store(tmp_path / task, name, task, form=form)
        _, model = load(repo, model_id)
        X, _ = _data(task)
        assert len(model.predict(X.iloc[:3])) == 3


def _tree_of(estimator: Any) -> Any:
    return estimator.estimators_[0].tree_ if hasattr(estimator, "estimators_") else estimator.tree_


def _nodes(change: Callable[[np.ndarray], None]) -> Callable[[Any], None]:
    return lambda estimator: set_tree_nodes(_tree_of(estimator), change)


def _field(name: str, value: int, node: int = 0) -> Callable[[np.ndarray], None]:
    def change(nodes: np.ndarray) -> None:
        nodes[name][node] = value

    return change


def _cycle(nodes: np.ndarray) -> None:
    # Node 1 is internal in these trees; send its left child back to the root.
    nodes["left_child"][1] = 0


def _one_child(nodes: np.ndarray) -> None:
    leaf = int(np.flatnonzero(nodes["left_child"] == -1)[0])
    nodes["left_child"][leaf] = leaf + 1


@pytest.mark.parametrize("form", ["", SKOPS])
@pytest.mark.parametrize(
    ("name", "mutate", "reason"),
    [
        ("decision_tree", aim_child_outside, "outside the tree"),
        ("random_forest", aim_child_outside, "outside the tree"),
        ("decision_tree", _nodes(_field("right_child", -5)), "outside the tree"),
        ("decision_tree", _nodes(_cycle), "outside the tree or backwards"),
        ("decision_tree", _nodes(_one_child), "one child"),
        ("extra_trees", _nodes(_field("feature", 10**6)), "feature the model does not have"),
        ("decision_tree", _nodes(_field("feature", -3)), "feature the model does not have"),
        ("decision_tree", lambda m: setattr(m.tree_, "max_depth", 10**9), "max_depth"),
        (
            "gradient_boosting",
            lambda m: setattr(m, "estimators_", np.hstack([m.estimators_, m.estimators_])),
            "stages",
        ),
        (
            "hist_gradient_boosting",
            lambda m: m._predictors[0][0].nodes["left"].__setitem__(0, 10**9),
            "outside the tree",
        ),
        (
            "hist_gradient_boosting",
            lambda m: m._predictors[1][0].nodes["feature_idx"].__setitem__(0, 99),
            "feature the model does not have",
        ),
        ("ridge", lambda m: setattr(m, "coef_", np.zeros(3)), "coef_"),
        ("linear", lambda m: setattr(m, "n_features_in_", 4), "disagrees with its manifest"),
    ],
)
def test_a_crafted_structure_is_data_loss(
    tmp_path: Path, name: str, mutate: Callable[[Any], None], reason: str, form: str
) -> None:
    repo, model_id = _store(tmp_path, name, form=form)
    rewrite_model(tmp_path / "objects", model_id, mutate)
    with pytest.raises(IntegrityError, match=reason):
        load(repo, model_id)


def _claims_one_class(model: Any) -> None:
    # The probe's case: unchecked, ModelInfer of 1,000 rows ended in "malloc(): invalid size".
    model.init_.class_prior_ = np.array([1.0])
    model.init_.classes_ = np.array([0.0])
    model.init_.n_classes_ = 1


def _leaf_value(value: float) -> Callable[[Any], None]:
    def change(model: Any) -> None:
        state = _tree_of(model).__getstate__()
        state["values"] = state["values"].copy()
        state["values"][-1] = value
        _tree_of(model).__setstate__(state)

    return change


@pytest.mark.parametrize("form", ["", SKOPS])
@pytest.mark.parametrize(
    ("name", "task", "mutate", "reason"),
    [
        ("gradient_boosting", CLASSIFICATION, _claims_one_class, "init_'s classes disagree"),
        (
            "gradient_boosting",
            REGRESSION,
            lambda m: setattr(m.init_, "n_outputs_", 0),
            "init_ does not have exactly one output",
        ),
        (
            "gradient_boosting",
            CLASSIFICATION,
            lambda m: setattr(m.init_, "n_outputs_", np.float64(1)),  # found by the fuzzer
            "init_ does not have exactly one output",
        ),
        (
            "gradient_boosting",
            REGRESSION,
            lambda m: setattr(m.estimators_[1, 0], "n_outputs_", 0),
            "a tree does not have exactly one output",
        ),
        (
            "gradient_boosting",
            REGRESSION,
            lambda m: setattr(m.init_, "constant_", np.zeros((1, 3))),
            "init_.constant_ is not",
        ),
        (
            "gradient_boosting",
            CLASSIFICATION,
            lambda m: setattr(m, "n_trees_per_iteration_", 1),
            "wrong trees per stage",
        ),
        (
            "gradient_boosting",
            REGRESSION,
            lambda m: setattr(m, "learning_rate", float("nan")),
            "learning_rate",
        ),
        (
            "hist_gradient_boosting",
            CLASSIFICATION,
            lambda m: setattr(m, "_baseline_prediction", m._baseline_prediction[:, :1]),
            "the baseline is not",
        ),
        ("hist_gradient_boosting", REGRESSION, lambda m: setattr(m, "_in_fit", True), "fitting"),
        (
            "hist_gradient_boosting",
            REGRESSION,
            lambda m: m._bin_mapper.bin_thresholds_.pop(),
            "bin thresholds disagree",
        ),
        ("decision_tree", REGRESSION, _leaf_value(float("nan")), "not finite"),
        ("random_forest", CLASSIFICATION, _leaf_value(-0.5), "shares are not shares"),
        ("decision_tree", CLASSIFICATION, lambda m: setattr(m, "n_classes_", 2), "n_classes_"),
        (
            "logistic_regression",
            CLASSIFICATION,
            lambda m: setattr(m, "coef_", m.coef_[:2]),
            "coef_",
        ),
        (
            "ridge",
            CLASSIFICATION,
            lambda m: setattr(m._label_binarizer, "y_type_", "multilabel-indicator"),
            "binarizer",
        ),
        (
            "ridge",
            REGRESSION,
            lambda m: setattr(m, "classes_", np.arange(3)),
            "regressor has classes",
        ),
        ("ridge", REGRESSION, lambda m: setattr(m, "predict_proba", 1), "is not state"),
    ],
)
def test_what_prediction_reads_is_checked_against_the_shapes_the_model_implies(
    tmp_path: Path, name: str, task: str, mutate: Callable[[Any], None], reason: str, form: str
) -> None:
    repo, model_id = _store(tmp_path, name, task, form=form)
    rewrite_model(tmp_path / "objects", model_id, mutate)
    with pytest.raises(IntegrityError, match=reason):
        load(repo, model_id)


def test_a_model_whose_inputs_disagree_with_its_manifest_is_refused(tmp_path: Path) -> None:
    repo, model_id = _store(tmp_path, "ridge")
    path = tmp_path / "objects" / "models" / model_id / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["model"]["features"] = manifest["model"]["features"][:4]
    path.write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="disagrees with its manifest"):
        load(repo, model_id)


@pytest.mark.parametrize("count", [0, 3])
def test_a_node_count_that_disagrees_with_the_tree_arrays_is_refused(
    tmp_path: Path, count: int
) -> None:
    repo, model_id = _store(tmp_path, "decision_tree", form=SKOPS)
    (artifact,) = (tmp_path / "objects" / "models" / model_id).glob("*.skops")
    crafted = with_schema_value(artifact.read_bytes(), "node_count", count)
    replace_artifact(tmp_path / "objects", model_id, crafted)
    with pytest.raises(IntegrityError, match="node count"):
        load(repo, model_id)


def test_a_model_whose_classes_disagree_with_its_manifest_is_refused(tmp_path: Path) -> None:
    repo, model_id = _store(tmp_path, "decision_tree", CLASSIFICATION)
    load(repo, model_id)
    path = tmp_path / "objects" / "models" / model_id / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["model"]["classes"] = ["setosa", "versicolor", "virginica"]
    path.write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="its classes disagree with its manifest"):
        load(repo, model_id)


def test_a_trusted_estimator_mlgate_never_trains_is_refused(tmp_path: Path) -> None:
    repo, model_id = _store(tmp_path, "linear")
    X, y = _data(REGRESSION)
    replace_artifact(tmp_path / "objects", model_id, dumps(Lasso().fit(X, y)))
    with pytest.raises(IntegrityError, match="Lasso is not an estimator mlgate trains"):
        load(repo, model_id)


@pytest.mark.parametrize("form", ["", SKOPS])
def test_a_classifier_whose_trees_disagree_on_the_classes_is_refused(
    tmp_path: Path, form: str
) -> None:
    repo, model_id = _store(tmp_path, "random_forest", CLASSIFICATION, form=form)
    rewrite_model(tmp_path / "objects", model_id, lambda m: setattr(m, "classes_", m.classes_[:2]))
    with pytest.raises(IntegrityError, match="n_classes_ disagrees with classes_"):
        load(repo, model_id)


def test_the_encoding_pipeline_is_checked_too(tmp_path: Path) -> None:
    X, y = _data(REGRESSION)
    X = X.assign(colour=["red" if v > 0 else "blue" for v in X["age"]])
    estimator, _ = build("decision_tree", REGRESSION, {}, 0)
    model = _with_encoding(estimator, {**{c: "numeric" for c in X.columns}, "colour": "string"})
    model.fit(X, y)
    repo = ModelRepository(LocalObjectStore(tmp_path / "objects"))
    record = models_pb2.Model(id=model_id_for_job(new_job_id()), estimator="decision_tree")
    for column in X.columns:
        record.features.add(name=str(column), dtype="numeric")
    save(repo, record, model)
    load(repo, record.id)
    rewrite_model(tmp_path / "objects", record.id, lambda m: aim_child_outside(m))
    with pytest.raises(IntegrityError, match="outside the tree"):
        load(repo, record.id)


def test_an_artifact_that_inflates_is_refused_before_it_is_unpacked(tmp_path: Path) -> None:
    repo, model_id = _store(tmp_path, "linear", form=SKOPS)
    folder = tmp_path / "objects" / "models" / model_id
    (artifact,) = folder.glob("*.skops")
    data = artifact.read_bytes()
    member = next(
        name for name in zipfile.ZipFile(BytesIO(data)).namelist() if name.endswith(".npy")
    )
    bomb = inflating_zip(data, member, 64 * 1024 * 1024)
    assert len(bomb) < 1024 * 1024
    replace_artifact(tmp_path / "objects", model_id, bomb)
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError, match="inflate"):
            load(repo, model_id)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024 * 1024


def test_a_model_past_the_size_limit_is_neither_saved_nor_loaded(tmp_path: Path) -> None:
    repo, model_id = _store(tmp_path, "random_forest", n_estimators=20)
    size = repo.get(model_id).size_bytes
    small = ModelRepository(LocalObjectStore(tmp_path / "objects"), max_bytes=size // 2)
    with pytest.raises(ResourceExhausted, match="MLGATE_MAX_MODEL_BYTES"):
        load(small, model_id)
    X, y = _data(REGRESSION)
    estimator, _ = build("random_forest", REGRESSION, {"n_estimators": 20}, 0)
    record = models_pb2.Model(id=model_id_for_job(new_job_id()))
    with pytest.raises(ResourceExhausted, match="MLGATE_MAX_MODEL_BYTES"):
        save(small, record, estimator.fit(X, y))
    assert not small.exists(record.id)
