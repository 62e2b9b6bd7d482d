"""Prediction as plain functions: rows checked against a model's inputs, then predicted in order."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlgate.errors import InvalidArgument
from mlgate.v1 import models_pb2

__all__ = ["Predictions", "check_rows", "plain", "predict"]

_ACCEPTS = {
    "numeric": (int, float),
    "integer": (int, float),
    "boolean": (bool,),
    "string": (str,),
}


def check_rows(rows: Sequence[Mapping[str, Any]], features: Sequence[models_pb2.Feature]) -> None:
    """Raise InvalidArgument naming the row and feature of the first bad value."""
    if not rows:
        raise InvalidArgument("rows", "is empty; send at least one row")
    expected = {f.name: f.dtype for f in features}
    for i, row in enumerate(rows):
        for name in row:
            if name not in expected:
                raise InvalidArgument(
                    f"rows[{i}].{name}",
                    f"is not a feature of this model; features: {', '.join(expected)}",
                )
        for name, dtype in expected.items():
            if name not in row:
                raise InvalidArgument(f"rows[{i}].{name}", "is missing")
            value = row[name]
            ok = isinstance(value, _ACCEPTS[dtype]) and not (
                dtype in ("numeric", "integer") and isinstance(value, bool)
            )
            if ok and isinstance(value, float) and not math.isfinite(value):
                ok = False
            if not ok:
                raise InvalidArgument(
                    f"rows[{i}].{name}", f"must be a finite {dtype} value, not {value!r}"
                )


Predictions = tuple[list[Any], list[Any], list[list[float]]]


def predict(model: Any, record: models_pb2.Model, rows: Sequence[Mapping[str, Any]]) -> Predictions:
    """One prediction per row in order; for classifiers, the classes and per-row probabilities."""
    names = [f.name for f in record.features]
    frame = pd.DataFrame([[row[name] for name in names] for row in rows], columns=names)
    for feature in record.features:
        if feature.dtype == "integer":
            frame[feature.name] = frame[feature.name].astype("float64")
    predicted = [plain(v) for v in model.predict(frame)]
    classes: list[Any] = []
    probabilities: list[list[float]] = []
    if hasattr(model, "classes_"):
        classes = [plain(c) for c in model.classes_]
        if hasattr(model, "predict_proba"):
            probabilities = [[float(p) for p in row] for row in model.predict_proba(frame)]
    return predicted, classes, probabilities


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON and protobuf understand."""
    return value.item() if isinstance(value, np.generic) else value
