"""One vectorized evaluation of a model on a batch of rows, by the fastest path for its size.

Forests are the models worth choosing for. Two paths give scikit-learn's own float64 results
(its ``predict`` adds the trees' outputs in tree order, then divides; so do both):

* ``_FlatForest`` (``workers.prediction``) walks all trees at once with a few numpy operations per
  level: about 0.1 ms for one row, but its arrays grow with rows times trees;
* tree by tree, each through scikit-learn's compiled tree walk without its per-call checks (the
  rows were checked already): a fixed cost per tree, then fast per row.

Other models are vectorized by scikit-learn itself, given a DataFrame with their feature names.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble._forest import BaseForest, ForestClassifier

from mlgate.v1 import models_pb2
from workers.prediction import forest_predict
from workers.tensors import Inputs

__all__ = ["FLAT_MAX_ROWS", "Evaluated", "evaluate", "evaluate_frame"]

#: Up to this many rows, walking all trees at once beats tree by tree. Measured on the seed forest
#: (100 trees of depth 3): they cross near 100 rows; the flat walk is twice as fast for one row,
#: tree by tree three times as fast for 10,000.
FLAT_MAX_ROWS = 100

#: Predictions [N], and for classifiers with probabilities, those [N, C].
Evaluated = tuple[np.ndarray, np.ndarray | None]


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


def _forest(model: BaseForest, inputs: np.ndarray) -> Evaluated:
    # float32, as scikit-learn's trees read their inputs.
    X = np.ascontiguousarray(inputs, dtype=np.float32)
    if X.shape[0] <= FLAT_MAX_ROWS:
        return forest_predict(model, X)
    return _by_tree(model, X)


def evaluate(model: Any, record: models_pb2.Model, inputs: Inputs) -> Evaluated:
    """Predictions for every row of ``inputs`` (see ``workers.tensors.decode``)."""
    if isinstance(inputs, np.ndarray):
        if isinstance(model, BaseForest) and model.n_outputs_ == 1:
            return _forest(model, inputs)
        frame = pd.DataFrame(inputs, columns=[f.name for f in record.features], copy=False)
    else:
        frame = pd.DataFrame(inputs, copy=False)
    return evaluate_frame(model, frame)


def evaluate_frame(model: Any, frame: pd.DataFrame) -> Evaluated:
    """Predictions for the rows of a DataFrame of the model's features (a training holdout);
    a forest's by the paths above when every column is numeric, as its trees would read them."""
    numeric = all(dtype.kind in "iuf" for dtype in frame.dtypes)
    if isinstance(model, BaseForest) and model.n_outputs_ == 1 and numeric:
        return _forest(model, frame.to_numpy())
    predicted = np.asarray(model.predict(frame))
    proba = model.predict_proba(frame) if hasattr(model, "predict_proba") else None
    return predicted, proba
