"""Blanks (missing values) in a model's inputs, and the imputation a training request asks for.

One rule, the same for rows, columns, ``predict --csv`` and ModelInfer (docs/prediction.md):

- a blank is a JSON ``null`` or a feature left out of a row; NaN in ``doubles``, FP64 or FP32; an
  empty string where a string (or boolean, sent as text) is expected; a column or tensor left out
  (blank in every row);
- a model takes blanks if it was trained with ``impute`` (each blank is filled with its
  feature's value, ``Model.imputation``) or its estimator handles them itself
  (``hist_gradient_boosting``); any other model refuses them, INVALID_ARGUMENT naming where.

Both sides import this module, and nothing here imports numpy: the gateway only routes jobs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlgate.errors import InvalidField
from mlgate.estimators import ESTIMATORS
from mlgate.quoting import listing, quote
from mlgate.v1 import models_pb2

__all__ = [
    "MAX_MAGNITUDE",
    "STRATEGIES",
    "Impute",
    "blank_name",
    "blank_refused",
    "fill_values",
    "is_blank",
    "parse_impute",
    "takes_blanks",
]

#: What ``TrainRequest.impute`` may say, as scikit-learn's SimpleImputer names its strategies.
STRATEGIES = ("median", "mean", "most_frequent", "constant")
_NUMBERS = ("numeric", "integer")
_BOOLEANS = {"true": True, "false": False}
# scikit-learn's tree models read inputs as float32 and refuse what overflows it, where the fast
# forest path would quietly predict with infinity: one bound on every number a model takes, the
# same for every model. (It is numpy.finfo(numpy.float32).max, written out so the gateway needs no
# numpy; a test holds it equal.)
MAX_MAGNITUDE = 3.4028234663852886e38


@dataclass(frozen=True)
class Impute:
    """A checked ``TrainRequest.impute``: the strategy for numeric features, the one for string
    and boolean ones (median and mean have no meaning there: the most frequent value), and for
    ``constant`` the value each feature takes, read as its dtype."""

    spec: str
    numeric: str
    categorical: str
    constants: Mapping[str, Any]


def parse_impute(text: str, dtypes: Mapping[str, str]) -> Impute | None:
    """``median``, ``mean``, ``most_frequent`` or ``constant:VALUE`` checked against the features'
    dtypes (``constant``'s VALUE must read as each feature's type); None for an empty one."""
    if not text:
        return None
    strategy, colon, value = text.partition(":")
    if strategy not in STRATEGIES:
        raise InvalidField(
            "impute",
            f"{quote(text)} is not one of median, mean, most_frequent or constant:VALUE",
        )
    if strategy != "constant":
        if colon:
            raise InvalidField("impute", f"{strategy} takes no value; only constant:VALUE does")
        categorical = "most_frequent"
        return Impute(text, strategy, categorical, {})
    if not colon or not value:
        raise InvalidField("impute", "constant needs a value: constant:0, constant:unknown")
    constants = {name: _constant(value, name, dtype) for name, dtype in dtypes.items()}
    return Impute(text, "constant", "constant", constants)


def _constant(value: str, name: str, dtype: str) -> Any:
    if dtype in _NUMBERS:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and abs(number) <= MAX_MAGNITUDE):
            raise InvalidField(
                "impute",
                f"constant:{quote(value, 40)} cannot fill {dtype} feature {quote(name, 40)}: "
                "it needs a finite number (or exclude the feature, or use median)",
            )
        return number
    if dtype == "boolean":
        if value.lower() not in _BOOLEANS:
            raise InvalidField(
                "impute",
                f"constant:{quote(value, 40)} cannot fill boolean feature {quote(name, 40)}: "
                "it needs true or false (or exclude the feature, or use most_frequent)",
            )
        return _BOOLEANS[value.lower()]
    return value


def takes_blanks(record: models_pb2.Model) -> bool:
    """Whether the model takes blanks: imputed, or by an estimator that handles them itself."""
    if record.HasField("imputation"):
        return True
    spec = ESTIMATORS.get(record.estimator)
    return spec is not None and spec.missing_values


def is_blank(value: Any, dtype: str) -> bool:
    """Whether one plain value (a row's, a column's) is a blank for a feature of ``dtype``."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return value == "" and dtype in ("string", "boolean")


def blank_name(value: Any) -> str:
    """How a message names a blank: null, NaN or an empty string."""
    if value is None:
        return "null"
    return "an empty string" if value == "" else "NaN"


def blank_refused(where: str, record: models_pb2.Model, what: str = "is blank") -> InvalidField:
    """The error for a blank sent to a model that takes none, naming ``where`` and the way out."""
    handles = [name for name, spec in ESTIMATORS.items() if spec.missing_values]
    return InvalidField(
        where,
        f"{what}, and this model ({record.estimator or 'its estimator'}, trained without "
        f"impute) takes no blanks: send a value, or train with impute (mlgate train --impute "
        f"median) or an estimator that handles blanks ({listing(handles)})",
    )


def fill_values(record: models_pb2.Model) -> dict[str, Any]:
    """Each feature's fill value from the model's record (empty when it is not imputed)."""
    if not record.HasField("imputation"):
        return {}
    found: dict[str, Any] = {}
    for name, value in record.imputation.values.items():
        kind = value.WhichOneof("kind")
        found[name] = getattr(value, kind) if kind in _KINDS else None
    return found


_KINDS = ("number_value", "string_value", "bool_value")
