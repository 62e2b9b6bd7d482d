"""Feature importances of a fitted model, per input column, for the estimators that have them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble._forest import BaseForest
from sklearn.pipeline import Pipeline

__all__ = ["feature_importances"]


def feature_importances(model: Any, features: Sequence[str]) -> dict[str, float]:
    """Each feature's importance (tree models' ``feature_importances_``); empty for estimators
    without them. A one-hot encoded column's importance is the sum over the columns it became."""
    encoder: ColumnTransformer | None = None
    estimator = model
    if isinstance(model, Pipeline):
        encoder, estimator = model.named_steps["encode"], model.named_steps["estimator"]
    raw = _forest_importances(estimator) or getattr(estimator, "feature_importances_", None)
    if raw is None:
        return {}
    owners = list(features) if encoder is None else _encoded_owners(encoder, features)
    if len(owners) != len(raw):
        return {}  # an encoding this module does not know: say nothing rather than mislabel
    found = dict.fromkeys(features, 0.0)
    for owner, value in zip(owners, raw, strict=True):
        found[owner] += float(value)
    return found


def _forest_importances(estimator: Any) -> list[float] | None:
    """A forest's ``feature_importances_`` as scikit-learn computes them (the mean of its trees',
    normalised), without the thread pool it starts for that: a few ms per job on small forests."""
    if not isinstance(estimator, BaseForest):
        return None
    trees = [tree.tree_ for tree in estimator.estimators_ if tree.tree_.node_count > 1]
    if not trees:
        return None
    mean = np.asarray(
        np.mean([tree.compute_feature_importances() for tree in trees], axis=0, dtype=np.float64)
    )
    total = float(np.sum(mean))
    return [float(v) / total for v in mean] if total else None


def _encoded_owners(encoder: ColumnTransformer, features: Sequence[str]) -> list[str]:
    """The input column behind each output column of the fitted encoder."""
    owners: list[str] = [""] * sum(s.stop - s.start for s in encoder.output_indices_.values())
    for name, transformer, columns in encoder.transformers_:
        where = encoder.output_indices_[name]
        if where.stop == where.start:
            continue
        names = [features[int(c)] if isinstance(c, (int, np.integer)) else str(c) for c in columns]
        if name == "remainder":
            outputs = names
        else:
            outputs = [
                column
                for column, categories in zip(names, transformer.categories_, strict=True)
                for _ in categories
            ]
        owners[where.start : where.stop] = outputs
    return owners
