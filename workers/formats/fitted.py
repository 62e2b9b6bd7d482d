"""Structural checks of a loaded model: what scikit-learn's prediction code trusts without checking.

skops refuses types outside the allowlist, and mlgate's own format builds nothing else, but an
artifact built only from trusted types can still hold arrays that scikit-learn's compiled code
indexes without bounds checks: one child index of 10**9 reads outside the tree and kills the
process, a boosting ``init_`` of the wrong width writes past the end of the heap. ``check_fitted``
runs after loading and before first use, so a crafted or corrupted artifact is refused instead.

The checks are structural: from a few sizes they can trust (the manifest's features, the
classes) they derive the shape of every array and the type of every part prediction reads, and
hold the model to them, down to each tree's nodes (``trees``) and each ensemble's members
(``ensembles``). Hyperparameters are checked by scikit-learn's own constraints, numbers that
reach a prediction must be finite, and no part may hold code. Only the shapes mlgate itself
saves are accepted: one of its allowlisted estimators, alone or behind the one-hot encoding
pipeline training adds, fitted on one target. A test traces every attribute prediction reads and
holds it to those the checks read first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn import ensemble, linear_model, tree
from sklearn.base import is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, LabelBinarizer, OneHotEncoder

from workers.formats.checks import (
    InvalidModel,
    attr,
    bounded,
    check_classes,
    check_part,
    exactly,
    float_array,
    holds_none,
    n_features,
    per_step,
    require,
)
from workers.formats.ensembles import (
    check_forest,
    check_gradient_boosting,
    check_hist_gradient_boosting,
    check_tree_estimator,
)

__all__ = ["CHECKED_TYPES", "InvalidModel", "check_fitted"]

# What scikit-learn's encoders may be asked to produce.
_OUTPUT_TYPES = (np.float64, np.float32, np.int64, np.int32, np.uint8, np.bool_)
_DEFAULT_OUTPUT = ({"transform": "default"}, None)


def _check_decision_tree(model: Any, features: int) -> None:
    check_part(model)
    classifier = isinstance(model, tree.DecisionTreeClassifier)
    classes = len(check_classes(model)) if classifier else 1
    check_tree_estimator(model, features, classes)


def _check_linear(model: Any, features: int) -> None:
    check_part(model)
    n = n_features(model, features)
    coef, intercept = attr(model, "coef_"), attr(model, "intercept_")
    if not isinstance(model, (linear_model.RidgeClassifier, linear_model.LogisticRegression)):
        float_array(coef, (n,), "coef_")
        require(
            type(intercept) in (float, np.float64) and bounded(np.asarray(intercept)),
            "intercept_ is not one finite number",
        )
        return
    classes = check_classes(model, counted=False)
    rows = per_step(len(classes))
    # A binary RidgeClassifier keeps one row of coefficients as a vector.
    one_row = rows == 1 and isinstance(coef, np.ndarray) and coef.ndim == 1
    float_array(coef, (n,) if one_row else (rows, n), "coef_")
    float_array(intercept, (rows,), "intercept_")
    if isinstance(model, linear_model.RidgeClassifier):
        binarizer = attr(model, "_label_binarizer")
        require(type(binarizer) is LabelBinarizer, "the label binarizer is not one")
        check_part(binarizer)
        # Read by predict to tell single-label from multilabel targets.
        expected = "binary" if len(classes) == 2 else "multiclass"
        require(exactly(attr(binarizer, "y_type_"), expected), "the label binarizer disagrees")


def _columns(value: Any, features: Sequence[str]) -> list[str]:
    require(
        isinstance(value, list) and all(type(c) is str and c in features for c in value),
        "an encoder's columns are not the model's features",
    )
    columns: list[str] = value
    return columns


def _check_names(part: Any, columns: Sequence[str]) -> None:
    n_features(part, len(columns))
    names = attr(part, "feature_names_in_")
    require(names is None or names.tolist() == list(columns), "feature names disagree")


def _check_one_hot(encoder: Any, columns: list[str]) -> int:
    """mlgate's one-hot encoder of ``columns``; how many columns it outputs."""
    check_part(encoder)
    _check_names(encoder, columns)
    require(
        encoder.handle_unknown == "ignore"
        and encoder.drop is None
        and holds_none(encoder, "drop_idx_")
        and holds_none(encoder, "_drop_idx_after_grouping")
        and attr(encoder, "_infrequent_enabled") is False
        and any(encoder.dtype is t for t in _OUTPUT_TYPES)
        and attr(encoder, "_sklearn_output_config") in _DEFAULT_OUTPUT,
        "the one-hot encoder is not mlgate's",
    )
    categories = attr(encoder, "categories_")
    require(
        isinstance(categories, list)
        and len(categories) == len(columns)
        and all(isinstance(c, np.ndarray) and c.ndim == 1 and len(c) >= 1 for c in categories),
        "the encoder's categories disagree with its features",
    )
    for known in categories:
        require(
            known.dtype.kind in "biufUO"
            and all(type(v) in (str, int, float, bool) for v in known.tolist()),
            "an encoder's categories are not values",
        )
        last = known[-1]
        if known.dtype.kind == "O" and isinstance(last, float) and last != last:
            # A blank seen in training (hist_gradient_boosting's): scikit-learn keeps it last.
            known = known[:-1]
        try:
            ordered = np.array_equal(np.unique(known), known)
        except TypeError:
            ordered = False
        # Encoding looks values up by binary search: sorted and distinct, as fitting left them.
        require(ordered, "an encoder's categories are not sorted and distinct")
    widths = [len(c) for c in categories]
    # Sizes the sparse matrix the codes are written into; scipy does not check them.
    require(exactly(attr(encoder, "_n_features_outs"), widths), "the encoder's widths disagree")
    return sum(widths)


def _check_identity(transformer: Any, columns: list[str]) -> int:
    """The remainder's pass-through: an identity, never a stored function."""
    check_part(transformer)
    _check_names(transformer, columns)
    require(
        transformer.func is None
        and transformer.inverse_func is None
        and transformer.kw_args is None
        and attr(transformer, "_sklearn_output_config") in _DEFAULT_OUTPUT,
        "unknown column transformer",
    )
    return len(columns)


def _check_encoding(encoder: Any, features: Sequence[str]) -> int:
    """mlgate's column encoder over the manifest's ``features``; how many columns it outputs."""
    require(type(encoder) is ColumnTransformer, "the pipeline's first step is not mlgate's encoder")
    check_part(encoder)
    _check_names(encoder, features)
    require(
        attr(encoder, "feature_names_in_") is not None
        and encoder.transformer_weights is None
        and type(attr(encoder, "sparse_output_")) is bool
        and attr(encoder, "_sklearn_output_config") in _DEFAULT_OUTPUT,
        "the column encoder is not mlgate's",
    )
    for entry in encoder.transformers:
        require(isinstance(entry, tuple) and len(entry) == 3, "unknown column transformer")
    fitted = attr(encoder, "transformers_")
    require(isinstance(fitted, list), "the column encoder has no fitted transformers")
    width = 0
    indices: dict[str, list[int]] = {}
    for entry in fitted:
        require(isinstance(entry, tuple) and len(entry) == 3, "unknown column transformer")
        name, transformer, selected = entry
        columns = _columns(selected, features)
        require(type(name) is str and name not in indices, "unknown column transformer")
        indices[name] = [list(features).index(c) for c in columns]
        if type(transformer) is OneHotEncoder:
            width += _check_one_hot(transformer, columns)
        elif type(transformer) is FunctionTransformer:
            width += _check_identity(transformer, columns)
        else:
            require(transformer in ("passthrough", "drop"), "unknown column transformer")
            width += len(columns) if transformer == "passthrough" else 0
    # Names each transformer's input columns when a DataFrame comes in.
    require(
        exactly(attr(encoder, "_transformer_to_input_indices"), indices),
        "the column encoder's columns disagree",
    )
    return width


_CHECKERS: dict[type, Callable[[Any, int], None]] = {
    tree.DecisionTreeClassifier: _check_decision_tree,
    tree.DecisionTreeRegressor: _check_decision_tree,
    ensemble.RandomForestClassifier: check_forest,
    ensemble.RandomForestRegressor: check_forest,
    ensemble.ExtraTreesClassifier: check_forest,
    ensemble.ExtraTreesRegressor: check_forest,
    ensemble.GradientBoostingClassifier: check_gradient_boosting,
    ensemble.GradientBoostingRegressor: check_gradient_boosting,
    ensemble.HistGradientBoostingClassifier: check_hist_gradient_boosting,
    ensemble.HistGradientBoostingRegressor: check_hist_gradient_boosting,
    linear_model.LinearRegression: _check_linear,
    linear_model.Ridge: _check_linear,
    linear_model.RidgeClassifier: _check_linear,
    linear_model.LogisticRegression: _check_linear,
}

#: The estimator classes a model may be; a test holds this equal to the allowlist's.
CHECKED_TYPES: frozenset[type] = frozenset(_CHECKERS)


def check_fitted(model: Any, features: Sequence[str]) -> None:
    """Raise InvalidModel unless ``model`` is a fitted mlgate model of these input features.

    What prediction runs as compiled code from the model's parameters (a boosting model's loss)
    is rebuilt here from the parameters once they are checked.
    """
    estimator = model
    width = len(features)
    if type(model) is Pipeline:
        check_part(model)
        steps = attr(model, "steps")
        require(
            isinstance(steps, list)
            and len(steps) == 2
            and all(isinstance(s, tuple) and len(s) == 2 and type(s[0]) is str for s in steps),
            "the pipeline is not mlgate's",
        )
        _check_manifest(steps[0][1], features)
        width = _check_encoding(steps[0][1], features)
        estimator = steps[1][1]
    else:
        _check_manifest(model, features)
    checker = _CHECKERS.get(type(estimator))
    require(checker is not None, f"{type(estimator).__name__} is not an estimator mlgate trains")
    assert checker is not None
    checker(estimator, width)
    if not is_classifier(estimator):
        # Results list a model's classes, if it has any.
        require(not hasattr(estimator, "classes_"), "a regressor has classes")


def _check_manifest(first: Any, features: Sequence[str]) -> None:
    """What takes the request's columns takes the manifest's features, by count and name."""
    require(
        exactly(attr(first, "n_features_in_"), len(features)),
        "the model's feature count disagrees with its manifest",
    )
    names = attr(first, "feature_names_in_")
    require(
        names is None or (isinstance(names, np.ndarray) and names.tolist() == list(features)),
        "the model's feature names disagree with its manifest",
    )
