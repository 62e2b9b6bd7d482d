"""Structural checks of a loaded model: what scikit-learn's compiled code trusts without checking.

skops refuses types outside the allowlist, but an artifact built only from trusted types can still
hold arrays that scikit-learn's tree walkers index without bounds checks: one child index of 10**9
reads outside the tree and kills the process. ``check_fitted`` runs after loading and before first
use, so a crafted or corrupted artifact is refused with a reason instead.

Only the shapes mlgate itself saves are accepted: one of its allowlisted estimators, alone or
behind the one-hot encoding pipeline training adds, fitted on one target.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn import ensemble, linear_model, tree
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
from sklearn.tree._tree import Tree

__all__ = ["CHECKED_TYPES", "InvalidModel", "check_fitted"]


class InvalidModel(ValueError):
    """The loaded object is not a model mlgate could have saved; the message says what is wrong."""


def _require(condition: bool | np.bool_, reason: str) -> None:
    if not condition:
        raise InvalidModel(reason)


def _attr(obj: Any, name: str) -> Any:
    """The attribute, or None: a crafted object may lack anything."""
    return getattr(obj, name, None)


def _n_features(model: Any) -> int:
    n = _attr(model, "n_features_in_")
    _require(isinstance(n, (int, np.integer)) and n >= 1, "n_features_in_ is missing or invalid")
    return int(n)


def _n_classes(model: Any) -> int:
    classes = _attr(model, "classes_")
    _require(
        isinstance(classes, np.ndarray) and classes.ndim == 1 and len(classes) >= 1,
        "classes_ is missing or not a list of labels",
    )
    return len(classes)


def _per_step(model: Any, classifier: type) -> int:
    """Trees per boosting step, or coefficient rows: one per class for a multiclass classifier,
    else one."""
    if not isinstance(model, classifier):
        return 1
    classes = _n_classes(model)
    return 1 if classes <= 2 else classes


def _tree_depths(left: np.ndarray, right: np.ndarray, internal: np.ndarray) -> np.ndarray:
    """Each node's depth, after checking the nodes form one tree rooted at node 0.

    Children must come after their parent (as scikit-learn's builders number them), which rules
    out cycles, and every node but the root must have exactly one parent.
    """
    n = len(left)
    index = np.arange(n)
    for side, children in (("left", left), ("right", right)):
        _require(
            bool(np.all((children[internal] > index[internal]) & (children[internal] < n))),
            f"a {side} child index points outside the tree or backwards",
        )
    kids = np.concatenate([left[internal], right[internal]]).astype(np.intp)
    counts = np.bincount(kids, minlength=n)
    _require(counts[0] == 0 and bool(np.all(counts[1:] == 1)), "the nodes do not form one tree")
    parent = np.full(n, -1, dtype=np.intp)
    parent[left[internal].astype(np.intp)] = index[internal]
    parent[right[internal].astype(np.intp)] = index[internal]
    # Pointer jumping: log2(depth) rounds of numpy work instead of a Python loop over the nodes.
    depth = (parent >= 0).astype(np.intp)
    above = parent.copy()
    while np.any(above >= 0):
        has = above >= 0
        depth[has] += depth[above[has]]
        above[has] = above[above[has]]
    return depth


def _check_tree(t: Any, n_features: int, n_classes: int) -> None:
    """A scikit-learn ``Tree`` of one output with ``n_classes`` (1 for regression)."""
    _require(isinstance(t, Tree), "a tree is not a scikit-learn Tree")
    # node_count sizes every array view the checks below read.
    _require(1 <= t.node_count == t.capacity, "the tree's node count disagrees with its arrays")
    _require(t.n_features == n_features, "a tree's feature count disagrees with the model's")
    _require(t.n_outputs == 1, "a tree has more than one output")
    _require(list(t.n_classes) == [n_classes], "a tree's class count disagrees with the model's")
    left = np.asarray(t.children_left)
    right = np.asarray(t.children_right)
    leaf = left == -1
    _require(bool(np.all(leaf == (right == -1))), "a tree node has only one child")
    internal = ~leaf
    feature = np.asarray(t.feature)
    _require(
        bool(np.all((feature[internal] >= 0) & (feature[internal] < n_features))),
        "a tree node splits on a feature the model does not have",
    )
    depth = _tree_depths(left, right, internal)
    _require(int(depth.max()) == t.max_depth, "a tree's max_depth disagrees with its nodes")


def _check_decision_tree(model: Any) -> None:
    classes = _n_classes(model) if isinstance(model, tree.DecisionTreeClassifier) else 1
    _require(_attr(model, "n_outputs_") == 1, "the model has more than one output")
    _check_tree(_attr(model, "tree_"), _n_features(model), classes)


def _check_forest(model: Any) -> None:
    n_features = _n_features(model)
    classifier = isinstance(model, (ensemble.RandomForestClassifier, ensemble.ExtraTreesClassifier))
    classes = _n_classes(model) if classifier else 1
    _require(_attr(model, "n_outputs_") == 1, "the model has more than one output")
    trees = _attr(model, "estimators_")
    _require(isinstance(trees, list) and len(trees) >= 1, "the forest has no trees")
    kind = _FOREST_TREES[type(model)]
    for member in trees:
        _require(type(member) is kind, "a forest member is not the forest's kind of tree")
        _require(_attr(member, "n_outputs_") == 1, "a forest tree has more than one output")
        _check_tree(_attr(member, "tree_"), n_features, classes)


_FOREST_TREES: dict[type, type] = {
    ensemble.RandomForestClassifier: tree.DecisionTreeClassifier,
    ensemble.RandomForestRegressor: tree.DecisionTreeRegressor,
    ensemble.ExtraTreesClassifier: tree.ExtraTreeClassifier,
    ensemble.ExtraTreesRegressor: tree.ExtraTreeRegressor,
}


def _check_gradient_boosting(model: Any) -> None:
    n_features = _n_features(model)
    per_stage = _per_step(model, ensemble.GradientBoostingClassifier)
    _require(_attr(model, "n_trees_per_iteration_") == per_stage, "wrong trees per stage")
    stages = _attr(model, "estimators_")
    # predict_stages writes one output column per stage column, unchecked.
    _require(
        isinstance(stages, np.ndarray)
        and stages.dtype == object
        and stages.ndim == 2
        and stages.shape[0] >= 1
        and stages.shape[1] == per_stage,
        "the boosting stages have the wrong shape",
    )
    for member in stages.ravel():
        _require(type(member) is tree.DecisionTreeRegressor, "a boosting stage is not a tree")
        _check_tree(_attr(member, "tree_"), n_features, 1)
    init = _attr(model, "init_")
    _require(
        (isinstance(init, str) and init == "zero")
        or type(init) in (DummyClassifier, DummyRegressor),
        "unknown init_",
    )


def _check_hist_gradient_boosting(model: Any) -> None:
    n_features = _n_features(model)
    per_iteration = _per_step(model, ensemble.HistGradientBoostingClassifier)
    _require(_attr(model, "n_trees_per_iteration_") == per_iteration, "wrong trees per step")
    mapper = _attr(model, "_bin_mapper")
    categorical = _attr(mapper, "is_categorical_")
    _require(
        isinstance(categorical, np.ndarray) and categorical.shape == (n_features,),
        "the model's feature binning disagrees with its feature count",
    )
    iterations = _attr(model, "_predictors")
    _require(isinstance(iterations, list) and len(iterations) >= 1, "the model has no trees")
    for predictors in iterations:
        _require(
            isinstance(predictors, list) and len(predictors) == per_iteration,
            "an iteration has the wrong number of trees",
        )
        for predictor in predictors:
            _check_predictor(predictor, n_features, categorical.astype(bool))


def _check_predictor(predictor: Any, n_features: int, categorical: np.ndarray) -> None:
    _require(type(predictor) is TreePredictor, "a tree is not a TreePredictor")
    nodes = _attr(predictor, "nodes")
    _require(
        isinstance(nodes, np.ndarray)
        and nodes.dtype == PREDICTOR_RECORD_DTYPE
        and nodes.ndim == 1
        and len(nodes) >= 1,
        "a tree's node array is malformed",
    )
    internal = nodes["is_leaf"] == 0
    feature = nodes["feature_idx"]
    _require(
        bool(np.all((feature[internal] >= 0) & (feature[internal] < n_features))),
        "a tree node splits on a feature the model does not have",
    )
    _tree_depths(nodes["left"], nodes["right"], internal)
    split = internal & (nodes["is_categorical"] != 0)
    if np.any(split):
        _require(
            bool(np.all(categorical[feature[split]])), "a categorical split on a numeric feature"
        )
        for name in ("raw_left_cat_bitsets", "binned_left_cat_bitsets"):
            bitsets = getattr(predictor, name, None)
            _require(
                isinstance(bitsets, np.ndarray)
                and bitsets.ndim == 2
                and bitsets.shape[1] == 8
                and bool(np.all(nodes["bitset_idx"][split] < bitsets.shape[0])),
                "a categorical split points outside its bitsets",
            )


def _check_linear(model: Any) -> None:
    n_features = _n_features(model)
    coef = _attr(model, "coef_")
    intercept = np.asarray(_attr(model, "intercept_"))
    _require(isinstance(coef, np.ndarray) and coef.dtype.kind == "f", "coef_ is not numeric")
    _require(intercept.dtype.kind == "f", "intercept_ is not numeric")
    if isinstance(model, (linear_model.RidgeClassifier, linear_model.LogisticRegression)):
        rows = _per_step(model, type(model))
        shapes = [(rows, n_features)] + ([(n_features,)] if rows == 1 else [])
        _require(coef.shape in shapes, "coef_ has the wrong shape for the model")
        _require(intercept.shape == (rows,), "intercept_ has the wrong shape for the model")
    else:
        _require(coef.shape == (n_features,), "coef_ has the wrong shape for the model")
        _require(intercept.shape == (), "intercept_ has the wrong shape for the model")


def _check_encoding(model: Any) -> None:
    _require(type(model) is ColumnTransformer, "the pipeline's first step is not mlgate's encoder")
    for _, transformer, _columns in getattr(model, "transformers_", []):
        if isinstance(transformer, str):
            _require(transformer in ("passthrough", "drop"), "unknown column transformer")
            continue
        if type(transformer) is FunctionTransformer:
            # The remainder's pass-through: an identity, never a stored function.
            _require(
                transformer.func is None and transformer.inverse_func is None,
                "unknown column transformer",
            )
            continue
        _require(type(transformer) is OneHotEncoder, "unknown column transformer")
        categories = _attr(transformer, "categories_")
        _require(
            isinstance(categories, list)
            and len(categories) == _n_features(transformer)
            and all(isinstance(c, np.ndarray) and c.ndim == 1 for c in categories),
            "the encoder's categories disagree with its features",
        )


_CHECKERS: dict[type, Callable[[Any], None]] = {
    tree.DecisionTreeClassifier: _check_decision_tree,
    tree.DecisionTreeRegressor: _check_decision_tree,
    ensemble.RandomForestClassifier: _check_forest,
    ensemble.RandomForestRegressor: _check_forest,
    ensemble.ExtraTreesClassifier: _check_forest,
    ensemble.ExtraTreesRegressor: _check_forest,
    ensemble.GradientBoostingClassifier: _check_gradient_boosting,
    ensemble.GradientBoostingRegressor: _check_gradient_boosting,
    ensemble.HistGradientBoostingClassifier: _check_hist_gradient_boosting,
    ensemble.HistGradientBoostingRegressor: _check_hist_gradient_boosting,
    linear_model.LinearRegression: _check_linear,
    linear_model.Ridge: _check_linear,
    linear_model.RidgeClassifier: _check_linear,
    linear_model.LogisticRegression: _check_linear,
}

#: The estimator classes a model may be; a test holds this equal to the allowlist's.
CHECKED_TYPES: frozenset[type] = frozenset(_CHECKERS)


def check_fitted(model: Any, features: Sequence[str]) -> None:
    """Raise InvalidModel unless ``model`` is a fitted mlgate model of these input features."""
    estimator = model
    if type(model) is Pipeline:
        steps = _attr(model, "steps")
        _require(isinstance(steps, list) and len(steps) == 2, "the pipeline is not mlgate's")
        _check_encoding(steps[0][1])
        estimator = steps[1][1]
    checker = _CHECKERS.get(type(estimator))
    _require(checker is not None, f"{type(estimator).__name__} is not an estimator mlgate trains")
    assert checker is not None
    checker(estimator)
    _require(
        _attr(model, "n_features_in_") == len(features),
        "the model's feature count disagrees with its manifest",
    )
