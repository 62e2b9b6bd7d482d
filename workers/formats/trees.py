"""Checks of the node arrays scikit-learn's compiled tree walkers index without bounds checks.

One child index of 10**9 makes a walk read outside its tree and kills the process, a leaf value
of NaN comes out as a prediction. Each check takes the sizes its caller derived (the model's
feature count, its number of classes) and holds the tree to them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble._hist_gradient_boosting.binning import _BinMapper
from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
from sklearn.tree._tree import Tree

from workers.formats.checks import attr, bounded, require

__all__ = ["check_bin_mapper", "check_predictor", "check_tree", "tree_depths"]

# The histogram trees' categorical bitsets: 8 words of 32 bits, one bit per category 0..255.
_BITSET_WORDS = 8
_MAX_CATEGORY = 255


def tree_depths(left: np.ndarray, right: np.ndarray, internal: np.ndarray) -> np.ndarray:
    """Each node's depth, after checking the nodes form one tree rooted at node 0.

    Children must come after their parent (as scikit-learn's builders number them), which rules
    out cycles, and every node but the root must have exactly one parent.
    """
    n = len(left)
    index = np.arange(n)
    for side, children in (("left", left), ("right", right)):
        require(
            bool(np.all((children[internal] > index[internal]) & (children[internal] < n))),
            f"a {side} child index points outside the tree or backwards",
        )
    kids = np.concatenate([left[internal], right[internal]]).astype(np.intp)
    counts = np.bincount(kids, minlength=n)
    require(counts[0] == 0 and bool(np.all(counts[1:] == 1)), "the nodes do not form one tree")
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


def check_tree(t: Any, n_features: int, n_classes: int) -> None:
    """A scikit-learn ``Tree`` of one output with ``n_classes`` (1 for regression)."""
    require(isinstance(t, Tree), "a tree is not a scikit-learn Tree")
    # node_count sizes every array view the checks below read.
    require(1 <= t.node_count == t.capacity, "the tree's node count disagrees with its arrays")
    require(t.n_features == n_features, "a tree's feature count disagrees with the model's")
    require(t.n_outputs == 1, "a tree has more than one output")
    require(list(t.n_classes) == [n_classes], "a tree's class count disagrees with the model's")
    left = np.asarray(t.children_left)
    right = np.asarray(t.children_right)
    leaf = left == -1
    require(bool(np.all(leaf == (right == -1))), "a tree node has only one child")
    internal = ~leaf
    feature = np.asarray(t.feature)
    require(
        bool(np.all((feature[internal] >= 0) & (feature[internal] < n_features))),
        "a tree node splits on a feature the model does not have",
    )
    depth = tree_depths(left, right, internal)
    require(int(depth.max()) == t.max_depth, "a tree's max_depth disagrees with its nodes")
    values = np.asarray(t.value)
    # Predictions are sums of leaf values, or for classes each leaf's shares of its samples, which
    # prediction divides by their sum: shares in [0, 1] keep every quotient at most 1.
    require(bounded(values), "a tree's values are not finite or too large")
    if n_classes > 1:
        require(bool(np.all((values >= 0) & (values <= 1))), "a tree's class shares are not shares")


def _check_bitsets(predictor: Any, name: str) -> np.ndarray:
    bitsets = attr(predictor, name)
    require(
        isinstance(bitsets, np.ndarray)
        and bitsets.dtype == np.uint32
        and bitsets.ndim == 2
        and bitsets.shape[1] == _BITSET_WORDS
        and bitsets.flags.c_contiguous,
        f"a tree's {name} are malformed",
    )
    checked: np.ndarray = bitsets
    return checked


def check_predictor(predictor: Any, n_features: int, categorical: np.ndarray) -> float:
    """A histogram gradient boosting tree over ``n_features``, of which ``categorical`` are;
    the largest magnitude it adds to a prediction."""
    require(type(predictor) is TreePredictor, "a tree is not a TreePredictor")
    nodes = attr(predictor, "nodes")
    require(
        isinstance(nodes, np.ndarray)
        and nodes.dtype == PREDICTOR_RECORD_DTYPE
        and nodes.ndim == 1
        and len(nodes) >= 1,
        "a tree's node array is malformed",
    )
    internal = nodes["is_leaf"] == 0
    feature = nodes["feature_idx"]
    require(
        bool(np.all((feature[internal] >= 0) & (feature[internal] < n_features))),
        "a tree node splits on a feature the model does not have",
    )
    tree_depths(nodes["left"], nodes["right"], internal)
    leaves = nodes["value"][~internal]
    require(bounded(leaves), "a tree's values are not finite or too large")
    split = internal & (nodes["is_categorical"] != 0)
    for name in ("raw_left_cat_bitsets", "binned_left_cat_bitsets"):
        bitsets = _check_bitsets(predictor, name)
        require(
            bool(np.all(nodes["bitset_idx"][split] < bitsets.shape[0])),
            "a categorical split points outside its bitsets",
        )
    # The known categories' bitsets have a row for categorical features only.
    require(bool(np.all(categorical[feature[split]])), "a categorical split on a numeric feature")
    return float(np.abs(leaves).max()) if len(leaves) else 0.0


def check_bin_mapper(mapper: Any, n_features: int) -> np.ndarray:
    """The binning of a histogram gradient boosting model; which features are categorical.

    Prediction reads only the categorical features' known categories, as bits 0..255.
    """
    require(type(mapper) is _BinMapper, "the model's feature binning is not a _BinMapper")
    categorical = attr(mapper, "is_categorical_")
    require(
        isinstance(categorical, np.ndarray)
        and categorical.dtype == np.uint8
        and categorical.shape == (n_features,),
        "the model's feature binning disagrees with its feature count",
    )
    thresholds = attr(mapper, "bin_thresholds_")
    require(
        isinstance(thresholds, list)
        and len(thresholds) == n_features
        and all(isinstance(t, np.ndarray) and t.ndim == 1 for t in thresholds),
        "the model's bin thresholds disagree with its feature count",
    )
    for f in np.flatnonzero(categorical):
        known = thresholds[f]
        require(
            known.dtype.kind == "f"
            and len(known) <= _MAX_CATEGORY + 1
            and bool(np.all((known >= 0) & (known <= _MAX_CATEGORY) & (known == np.round(known)))),
            "a categorical feature's known categories are not categories 0 to 255",
        )
    mask: np.ndarray = categorical.astype(bool)
    return mask
