"""Imputation (``TrainRequest.impute``): scikit-learn's SimpleImputer learns each feature's fill
value from the training rows; every prediction path fills blanks with those values.

The values are kept with the model as data (``Model.imputation``, the manifest's record), never
as code, and applied here to the evaluator's ``Inputs`` whatever form the rows came in, so a
model predicts as scikit-learn's ``make_pipeline(SimpleImputer(...), estimator)`` would, to the
last bit: the imputer replaces each NaN by its float64 statistic, and so does ``fill``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer

from mlgate.blanks import MAX_MAGNITUDE, Impute, fill_values
from mlgate.errors import InvalidField
from mlgate.v1 import models_pb2
from storage.errors import IntegrityError
from workers.tensors import Inputs
from workers.values import plain, values

__all__ = ["check_imputation", "fill", "fill_frame", "imputation_record", "learn"]

_NUMBERS = ("numeric", "integer")


def learn(frame: pd.DataFrame, dtypes: Mapping[str, str], impute: Impute) -> dict[str, Any]:
    """Each feature's fill value, learned from the training rows ``frame`` as SimpleImputer
    learns it: median, mean, most frequent or the constant for numbers; for string and boolean
    features the most frequent value or the constant. Raises InvalidField for a feature
    without a value to learn from."""
    numeric = [name for name, dtype in dtypes.items() if dtype in _NUMBERS]
    others = [name for name in dtypes if name not in numeric]
    learned: dict[str, Any] = {}
    if numeric:
        learned.update(
            _fitted(impute.numeric, frame[numeric].to_numpy(np.float64), numeric, impute)
        )
    if others:
        learned.update(_fitted(impute.categorical, frame[others].to_numpy(object), others, impute))
    return {name: learned[name] for name in dtypes}


def _fitted(strategy: str, X: np.ndarray, names: list[str], impute: Impute) -> dict[str, Any]:
    if strategy == "constant":
        return {name: impute.constants[name] for name in names}
    blank = [name for name, empty in zip(names, pd.isna(X).all(axis=0), strict=True) if empty]
    if blank:
        raise InvalidField(
            "impute",
            f"feature {blank[0]} has no value in the training rows to learn a fill value from; "
            f"leave it out (exclude {blank[0]})",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imputer = SimpleImputer(strategy=strategy).fit(X)
    return {name: plain(value) for name, value in zip(names, imputer.statistics_, strict=True)}


def fill_frame(frame: pd.DataFrame, learned: Mapping[str, Any]) -> pd.DataFrame:
    """The training or holdout rows with their blanks filled."""
    return frame.fillna({name: value for name, value in learned.items() if name in frame})


def imputation_record(impute: Impute, learned: Mapping[str, Any]) -> models_pb2.Imputation:
    record = models_pb2.Imputation(strategy=impute.spec)
    for name, value in zip(learned, values(learned.values()), strict=True):
        record.values[name].CopyFrom(value)
    return record


def check_imputation(record: models_pb2.Model) -> None:
    """Raise IntegrityError unless a loaded model's imputation (from its manifest) holds one fill
    value per feature, of the feature's type: a number within float32's range for numeric and
    integer features, a value for string ones, true or false for boolean ones."""
    if not record.HasField("imputation"):
        return
    learned = fill_values(record)
    for feature in record.features:
        value = learned.get(feature.name)
        if feature.dtype in _NUMBERS:
            ok = type(value) is float and math.isfinite(value) and abs(value) <= MAX_MAGNITUDE
        elif feature.dtype == "boolean":
            ok = type(value) is bool
        else:
            # A text column of true/false with blanks reads as booleans and blanks: it is text.
            ok = type(value) in (str, bool)
        if not ok:
            raise IntegrityError(
                f"model {record.id} is not a valid model: its imputation has no usable value for "
                f"feature {feature.name}; it was not loaded"
            )
    if set(learned) != {f.name for f in record.features}:
        raise IntegrityError(
            f"model {record.id} is not a valid model: its imputation names other features than "
            "its own; it was not loaded"
        )


def fill(inputs: Inputs, record: models_pb2.Model) -> Inputs:
    """``inputs`` with every blank (NaN) replaced by its feature's value, for an imputed model;
    as they are for any other."""
    learned = fill_values(record)
    if not learned:
        return inputs
    if isinstance(inputs, np.ndarray):
        blank = np.isnan(inputs)
        if not blank.any():
            return inputs
        row = np.array([learned[f.name] for f in record.features], dtype=np.float64)
        return np.where(blank, row, inputs)
    filled = dict(inputs)
    for feature in record.features:
        column = inputs[feature.name]
        blank = column != column  # NaN, the only value unequal to itself
        if not blank.any():
            continue
        column = column.copy()
        column[blank] = learned[feature.name]
        if feature.dtype == "boolean":
            column = column.astype(bool)
        filled[feature.name] = column
    return filled
