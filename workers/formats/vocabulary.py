"""What an artifact in mlgate's format may name: the classes it may build, the dtypes its arrays
may have, the scalar types it may hold; and the format's errors. Names only: nothing an artifact
says is ever imported.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from sklearn import ensemble, linear_model, tree
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble._hist_gradient_boosting.binning import _BinMapper
from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    LabelBinarizer,
    LabelEncoder,
    OneHotEncoder,
    OrdinalEncoder,
)
from sklearn.tree._tree import NODE_DTYPE

__all__ = [
    "CLASSES",
    "HIST_BOOSTING",
    "LOSS_OWNERS",
    "RECORDS",
    "SCALAR_TYPES",
    "Malformed",
    "TooLarge",
    "Unencodable",
    "dtype_name",
    "dtype_of",
    "named_dtype",
    "own_attributes",
    "require",
]

_CLASS_LIST: list[type] = [
    ensemble.RandomForestRegressor,
    ensemble.RandomForestClassifier,
    ensemble.ExtraTreesRegressor,
    ensemble.ExtraTreesClassifier,
    ensemble.GradientBoostingRegressor,
    ensemble.GradientBoostingClassifier,
    ensemble.HistGradientBoostingRegressor,
    ensemble.HistGradientBoostingClassifier,
    tree.DecisionTreeRegressor,
    tree.DecisionTreeClassifier,
    tree.ExtraTreeRegressor,
    tree.ExtraTreeClassifier,
    linear_model.LinearRegression,
    linear_model.Ridge,
    linear_model.RidgeClassifier,
    linear_model.LogisticRegression,
    DummyRegressor,
    DummyClassifier,
    Pipeline,
    ColumnTransformer,
    OneHotEncoder,
    OrdinalEncoder,
    FunctionTransformer,
    LabelBinarizer,
    LabelEncoder,
    TreePredictor,
    _BinMapper,
]
#: The classes an artifact may name, by their short name.
CLASSES: dict[str, type] = {cls.__name__: cls for cls in _CLASS_LIST}
# Estimators whose ``_loss`` is compiled code, rebuilt by their ``_get_loss`` on load.
LOSS_OWNERS = (
    ensemble.GradientBoostingRegressor,
    ensemble.GradientBoostingClassifier,
    ensemble.HistGradientBoostingRegressor,
    ensemble.HistGradientBoostingClassifier,
)
# Estimators whose categorical features' preprocessor holds a function: saved as its encoder.
HIST_BOOSTING = (ensemble.HistGradientBoostingRegressor, ensemble.HistGradientBoostingClassifier)
RECORDS: dict[str, np.dtype[Any]] = {
    "node": np.dtype(NODE_DTYPE),
    "predictor_node": np.dtype(PREDICTOR_RECORD_DTYPE),
}
SCALAR_TYPES: dict[str, type] = {
    t.__name__: t
    for t in (np.float64, np.float32, np.int64, np.int32, np.uint8, np.uint32, np.uint64, np.bool_)
}
_PLAIN_KINDS = "biufU"


class Unencodable(ValueError):
    """The object holds something this format does not describe; save it another way."""


class Malformed(ValueError):
    """The bytes are not an artifact this format could have written; the message says why."""


class TooLarge(ValueError):
    """Decoding would allocate more than the limit it was given; nothing that large was made."""

    def __init__(self, size: int) -> None:
        super().__init__(f"decoding needs at least {size} bytes")
        self.size = size


def require(condition: bool, reason: str) -> None:
    if not condition:
        raise Malformed(reason)


@functools.lru_cache(maxsize=64)
def dtype_name(dtype: np.dtype[Any]) -> str:
    # Cached: comparing with the record dtypes costs more than the rest of a small array's encoding.
    for name, record in RECORDS.items():
        if dtype == record:
            return name
    if dtype.kind in _PLAIN_KINDS and dtype.fields is None and dtype.subdtype is None:
        return dtype.str
    raise Unencodable(f"an array of {dtype}")


def dtype_of(name: object) -> np.dtype[Any]:
    require(isinstance(name, str), "an array's dtype is not a name")
    assert isinstance(name, str)
    return named_dtype(name)


@functools.lru_cache(maxsize=64)
def named_dtype(name: str) -> np.dtype[Any]:
    if name in RECORDS:
        return RECORDS[name]
    try:
        dtype = np.dtype(name)
    except TypeError:
        raise Malformed(f"unknown dtype {name[:40]!r}") from None
    require(
        dtype.kind in _PLAIN_KINDS and dtype.fields is None and dtype.subdtype is None,
        f"arrays of {dtype} are not allowed",
    )
    return dtype


def own_attributes(cls: type, names: Any) -> None:
    """An attribute named like a method or property of its class would replace it."""
    for name in names:
        if (cls, name) not in _CHECKED_NAMES:
            _check_name(cls, name)
            _CHECKED_NAMES.add((cls, name))


# (class, attribute) pairs found harmless: a forest repeats its trees' names a hundred times.
_CHECKED_NAMES: set[tuple[type, str]] = set()


def _check_name(cls: type, name: object) -> None:
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("__"):
        raise Malformed(f"{cls.__name__} has an invalid attribute name")
    if hasattr(cls, name):
        raise Malformed(f"{cls.__name__}.{name} would replace what the class defines")
