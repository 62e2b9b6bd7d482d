"""Prediction as plain functions: rows checked against a model's inputs (``mlgate.jobs.check_rows``)
are predicted in order."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble._forest import BaseForest, ForestClassifier

from mlgate.v1 import models_pb2

__all__ = ["Predictions", "forest_predict", "plain", "predict"]

Predictions = tuple[list[Any], list[Any], list[list[float]]]


def predict(model: Any, record: models_pb2.Model, rows: Sequence[Mapping[str, Any]]) -> Predictions:
    """One prediction per row in order; for classifiers, the classes and per-row probabilities.

    Rows must have passed ``check_rows`` against the same record.
    """
    names = [f.name for f in record.features]
    numeric = all(f.dtype in ("numeric", "integer") for f in record.features)
    if isinstance(model, BaseForest) and model.n_outputs_ == 1 and numeric:
        # check_rows already did what scikit-learn's input validation would: skip pandas.
        X = np.array([[row[name] for name in names] for row in rows], dtype=np.float32)
        raw, proba = forest_predict(model, X)
    else:
        frame = pd.DataFrame([[row[name] for name in names] for row in rows], columns=names)
        for feature in record.features:
            if feature.dtype == "integer":
                frame[feature.name] = frame[feature.name].astype("float64")
        raw = model.predict(frame)
        proba = model.predict_proba(frame) if hasattr(model, "predict_proba") else None
    predicted = [plain(v) for v in raw]
    classes = [plain(c) for c in getattr(model, "classes_", [])]
    probabilities = [] if proba is None else [[float(p) for p in row] for row in proba]
    return predicted, classes, probabilities


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


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON and protobuf understand."""
    return value.item() if isinstance(value, np.generic) else value
