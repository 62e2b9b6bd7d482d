"""One vectorized evaluation of a model on a batch of rows, by the fastest path for its size.

Forests are the models worth choosing for. Two paths give scikit-learn's own float64 results
(its ``predict`` adds the trees' outputs in tree order, then divides; so do both):

* ``_FlatForest`` walks all trees at once with a few numpy operations per level: about 0.1 ms for
  one row, but its arrays grow with rows times trees;
* tree by tree, each through scikit-learn's compiled tree walk without its per-call checks (the
  rows were checked already): a fixed cost per tree, then fast per row.

Other models are vectorized by scikit-learn itself, given a DataFrame with their feature names.
Prediction jobs (rows or columns) and online inference (tensors) all end here, as ``Inputs``.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble._forest import BaseForest, ForestClassifier

from mlgate.v1 import models_pb2
from workers.tensors import Inputs

__all__ = ["FLAT_MAX_ROWS", "Evaluated", "evaluate", "evaluate_frame", "forest_predict"]

#: Up to this many rows, walking all trees at once beats tree by tree. Measured on the seed forest
#: (100 trees of depth 3): they cross near 100 rows; the flat walk is twice as fast for one row,
#: tree by tree three times as fast for 10,000.
FLAT_MAX_ROWS = 100

#: Predictions [N], and for classifiers with probabilities, those [N, C].
Evaluated = tuple[np.ndarray, np.ndarray | None]


class _FlatForest:
    """A fitted forest's trees laid end to end in flat arrays, walked for all trees at once.

    ``BaseForest.predict`` dispatches every tree through joblib and re-checks each one, which
    costs about 0.15 ms a tree even with one job: 15 ms per request for the default 100 trees.
    Walking all trees together with a few numpy operations per level, then adding the trees'
    leaf values in scikit-learn's order, gives the same numbers (a test holds them equal) in a
    small fraction of the time.
    """

    def __init__(self, model: BaseForest) -> None:
        trees = [estimator.tree_ for estimator in model.estimators_]
        offsets = np.cumsum([0] + [tree.node_count for tree in trees[:-1]])
        self.roots = offsets.astype(np.intp)
        self.left = np.concatenate(
            [
                np.where(t.children_left >= 0, t.children_left + o, -1)
                for t, o in zip(trees, offsets, strict=True)
            ]
        ).astype(np.intp)
        self.right = np.concatenate(
            [
                np.where(t.children_right >= 0, t.children_right + o, -1)
                for t, o in zip(trees, offsets, strict=True)
            ]
        ).astype(np.intp)
        # Leaves have feature -2: clip so indexing is valid; their comparison is never used.
        self.feature = np.concatenate([np.maximum(t.feature, 0) for t in trees]).astype(np.intp)
        self.threshold = np.concatenate([t.threshold for t in trees])
        self.depth = max(t.max_depth for t in trees)
        self.classifier = isinstance(model, ForestClassifier)
        if self.classifier:
            n_classes = len(model.classes_)
            values = np.concatenate([t.value[:, 0, :n_classes] for t in trees])
            total = values.sum(axis=1, keepdims=True)
            total[total == 0.0] = 1.0
            self.value = values / total  # each tree's predict_proba at each leaf
        else:
            self.value = np.concatenate([t.value[:, 0, :1] for t in trees])
        self.classes = getattr(model, "classes_", None)

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        rows = np.arange(X.shape[0])[:, None]
        node = np.broadcast_to(self.roots, (X.shape[0], len(self.roots))).copy()
        for _ in range(self.depth):
            leaf = self.left[node] < 0
            # float32 inputs against float64 thresholds, as scikit-learn's tree walk compares.
            go_left = X[rows, self.feature[node]].astype(np.float64) <= self.threshold[node]
            node = np.where(leaf, node, np.where(go_left, self.left[node], self.right[node]))
        leaves = self.value[node]  # (rows, trees, outputs)
        summed = np.zeros((X.shape[0], leaves.shape[2]), dtype=np.float64)
        for tree in range(leaves.shape[1]):
            summed += leaves[:, tree, :]
        summed /= leaves.shape[1]
        if self.classifier:
            assert self.classes is not None
            return self.classes.take(np.argmax(summed, axis=1), axis=0), summed
        return summed[:, 0], None


_FLAT: weakref.WeakKeyDictionary[BaseForest, _FlatForest] = weakref.WeakKeyDictionary()
_FLAT_LOCK = threading.Lock()


def forest_predict(model: BaseForest, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions (and probabilities, for classifiers) of a one-output forest for float32 rows,
    walking all its trees at once."""
    with _FLAT_LOCK:
        flat = _FLAT.get(model)
    if flat is None:
        flat = _FlatForest(model)
        with _FLAT_LOCK:
            _FLAT[model] = flat
    return flat.predict(X)


def _by_tree(model: BaseForest, X: np.ndarray) -> Evaluated:
    # What the trees' own predict and predict_proba return, without their per-call checks.
    trees = [estimator.tree_ for estimator in model.estimators_]
    if isinstance(model, ForestClassifier):
        classes = len(model.classes_)
        proba = np.zeros((X.shape[0], classes), dtype=np.float64)
        for tree in trees:
            proba += tree.predict(X)[:, :classes]
        proba /= len(trees)
        return model.classes_.take(np.argmax(proba, axis=1), axis=0), proba
    predicted = np.zeros(X.shape[0], dtype=np.float64)
    for tree in trees:
        predicted += tree.predict(X)[:, 0]
    predicted /= len(trees)
    return predicted, None


def _one_output_forest(model: Any) -> bool:
    """Whether ``model`` is evaluated by the forest paths above (given numbers only)."""
    return isinstance(model, BaseForest) and model.n_outputs_ == 1


def _forest(model: BaseForest, inputs: np.ndarray) -> Evaluated:
    # float32, as scikit-learn's trees read their inputs.
    X = np.ascontiguousarray(inputs, dtype=np.float32)
    if X.shape[0] <= FLAT_MAX_ROWS:
        return forest_predict(model, X)
    return _by_tree(model, X)


def evaluate(model: Any, record: models_pb2.Model, inputs: Inputs) -> Evaluated:
    """Predictions for every row of ``inputs`` (see ``workers.tensors.decode``)."""
    if isinstance(inputs, np.ndarray):
        if _one_output_forest(model):
            return _forest(model, inputs)
        frame = pd.DataFrame(inputs, columns=[f.name for f in record.features], copy=False)
    else:
        frame = pd.DataFrame(inputs, copy=False)
    return evaluate_frame(model, frame)


def evaluate_frame(model: Any, frame: pd.DataFrame) -> Evaluated:
    """Predictions for the rows of a DataFrame of the model's features (a training holdout);
    a forest's by the paths above when every column is numeric, as its trees would read them."""
    numeric = all(dtype.kind in "iuf" for dtype in frame.dtypes)
    if numeric and _one_output_forest(model):
        return _forest(model, frame.to_numpy())
    predicted = np.asarray(model.predict(frame))
    proba = model.predict_proba(frame) if hasattr(model, "predict_proba") else None
    return predicted, proba
