"""Histogram gradient boosting with categorical features: its feature preprocessor, kept as data.

Given ``categorical_features``, scikit-learn's histogram gradient boosting encodes its inputs with
a preprocessor of its own: a ``ColumnTransformer`` of an ``OrdinalEncoder`` for the categorical
features and, for the others, a ``FunctionTransformer`` of a function (``check_array`` with
arguments bound). A function is code, which no artifact may hold, so an artifact keeps only the
``OrdinalEncoder``'s categories in the preprocessor's place (``artifact_preprocessor``), and
``rebuild_preprocessor`` builds the preprocessor again by scikit-learn's own fitting code, from
the model's checked hyperparameters and the encoder's categories, then holds the result to the
artifact: the same categorical features and the same categories, in the same order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import OrdinalEncoder

from workers.formats.checks import attr, check_part, require

__all__ = ["artifact_preprocessor", "rebuild_preprocessor"]

# Categories of one feature: at most 255 (max_bins' bound) and a blank.
_MAX_CATEGORIES = 256
# Cells of the made-up rows the preprocessor is fitted on again: 128 MiB of float64.
_MAX_CELLS = 2**24


def artifact_preprocessor(preprocessor: Any) -> OrdinalEncoder | None:
    """What an artifact keeps of a fitted model's preprocessor: its ordinal encoder, or None if
    it is not the preprocessor scikit-learn builds (the caller then saves the model otherwise).
    A model loaded but not yet checked holds the encoder already, and keeps it."""
    if type(preprocessor) is OrdinalEncoder:
        return preprocessor
    if type(preprocessor) is not ColumnTransformer:
        return None
    encoder: Any = getattr(preprocessor, "named_transformers_", {}).get("encoder")
    if type(encoder) is not OrdinalEncoder:
        return None
    # Its categories are all the rebuilding takes; the rest of its state is fitting's.
    kept = OrdinalEncoder(**encoder.get_params())
    kept.categories_ = encoder.categories_
    return kept


def _categories(encoder: Any, count: int) -> list[np.ndarray]:
    """The encoder's categories: one list of numbers per categorical feature, sorted and
    distinct as fitting leaves them, a blank only last."""
    categories = attr(encoder, "categories_")
    require(
        isinstance(categories, list) and len(categories) == count,
        "the categorical encoder's categories disagree with the categorical features",
    )
    for known in categories:
        require(
            isinstance(known, np.ndarray)
            and known.ndim == 1
            and 1 <= len(known) <= _MAX_CATEGORIES
            and known.dtype.kind in "iuf",
            "a categorical feature's categories are not numbers",
        )
        values = known[:-1] if known.dtype.kind == "f" and np.isnan(known[-1]) else known
        require(
            bool(np.all(np.isfinite(values))) and np.array_equal(np.unique(values), values),
            "a categorical feature's categories are not sorted and distinct",
        )
    checked: list[np.ndarray] = categories
    return checked


def _rows(model: Any, mask: np.ndarray, categories: list[np.ndarray]) -> Any:
    """Made-up rows holding exactly these categories, in the shape the model was fitted on."""
    height = max(len(known) for known in categories)
    require(height * len(mask) <= _MAX_CELLS, "the categorical features are too many to check")
    columns: list[np.ndarray] = []
    found = iter(categories)
    for categorical in mask:
        if categorical:
            known = next(found)
            columns.append(np.resize(known, height))  # repeats: the same distinct values
        else:
            columns.append(np.zeros(height))
    names = attr(model, "feature_names_in_")
    if names is None:
        return np.column_stack(columns).astype(np.float64)
    return pd.DataFrame(dict(zip(names.tolist(), columns, strict=True)))


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def rebuild_preprocessor(model: Any, n_features: int, binned: np.ndarray) -> None:
    """Replace the encoder an artifact holds as ``model._preprocessor`` by the preprocessor
    scikit-learn builds from the model's hyperparameters and that encoder's categories. The
    trees read the categorical features first: ``binned`` (the binning's categorical features)
    must be them."""
    encoder = attr(model, "_preprocessor")
    require(type(encoder) is OrdinalEncoder, "the model's feature preprocessor is not mlgate's")
    check_part(encoder)
    mask = attr(model, "is_categorical_")
    require(
        isinstance(mask, np.ndarray)
        and mask.dtype == np.bool_
        and mask.shape == (n_features,)
        and bool(mask.any()),
        "the model's categorical features disagree with its feature count",
    )
    count = int(mask.sum())
    categories = _categories(encoder, count)
    require(
        bool(np.all(binned[:count])) and not bool(np.any(binned[count:])),
        "the trees' categorical features are not the preprocessor's",
    )
    rows = _rows(model, mask, categories)
    try:
        # scikit-learn's own fitting code builds it: the function it holds is scikit-learn's.
        model._preprocess_X(rows, reset=True)
    except ValueError as exc:
        require(False, f"the model's categorical features are invalid: {exc}")
    require(
        model.is_categorical_ is not None and np.array_equal(model.is_categorical_, mask),
        "the model's categorical features disagree with its hyperparameters",
    )
    rebuilt = model._preprocessor.named_transformers_["encoder"]
    require(
        all(_same(a, b) for a, b in zip(rebuilt.categories_, categories, strict=True)),
        "the model's categories disagree with its preprocessor's",
    )
