"""One rule for a prediction's inputs, whatever form they come in (docs/prediction.md):

- **Extra names** (a row's key, a column or a tensor that is not a feature) are ignored, and the
  result's warnings name them: callers of an alias need not change what they send when it moves
  to a version trained on fewer columns.
- **Blanks** are taken by models that take them and refused by the others (``mlgate.blanks``).
- **Values of a string or boolean feature that training never saw** are ignored by the one-hot
  encoder, and the result's warnings say so (the workers' ``workers.categories``).

The gateway checks a job's rows or columns here before queueing it and the worker again before
running it; ModelInfer's tensors are checked by ``mlgate.tensors`` by the same rule. Nothing here
imports numpy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlgate.blanks import (
    MAX_MAGNITUDE,
    blank_name,
    blank_refused,
    fill_values,
    is_blank,
    takes_blanks,
)
from mlgate.columns import check_columns
from mlgate.errors import InvalidField
from mlgate.estimators import ESTIMATORS
from mlgate.quoting import listing, quote_value
from mlgate.v1 import jobs_pb2, models_pb2

__all__ = ["check_predict", "check_rows", "notes", "row_keys"]

_ACCEPTS = {
    "numeric": (int, float),
    "integer": (int, float),
    "boolean": (bool,),
    "string": (str,),
}


def check_predict(
    request: jobs_pb2.PredictRequest, record: models_pb2.Model, rows: Sequence[Mapping[str, Any]]
) -> int:
    """How many rows a prediction job sends; raises InvalidField naming the first row, column
    or value the model cannot take. ``rows`` are the request's rows as Python values
    (``mlgate.jobs.from_struct``), empty when it sends columns."""
    if request.rows and request.columns:
        raise InvalidField("columns", "send the rows as rows or as columns, not both")
    if request.columns:
        return check_columns(request.columns, record)
    check_rows(rows, record)
    return len(rows)


def check_rows(rows: Sequence[Mapping[str, Any]], record: models_pb2.Model) -> None:
    """Raise InvalidField naming the row and feature of the first value the model cannot take."""
    if not rows:
        raise InvalidField("rows", "is empty; send at least one row")
    blanks = takes_blanks(record)
    features = [(f.name, f.dtype) for f in record.features]
    for i, row in enumerate(rows):
        for name, dtype in features:
            value = row.get(name)
            if is_blank(value, dtype):
                if not blanks:
                    what = f"is blank ({blank_name(value)})" if name in row else "is missing"
                    raise blank_refused(f"rows[{i}].{name}", record, what)
                continue
            ok = isinstance(value, _ACCEPTS[dtype]) and not (
                dtype in ("numeric", "integer") and isinstance(value, bool)
            )
            if ok and isinstance(value, float) and not math.isfinite(value):
                ok = False
            if not ok:
                raise InvalidField(
                    f"rows[{i}].{name}", f"must be a finite {dtype} value, not {quote_value(value)}"
                )
            if isinstance(value, int | float) and abs(value) > MAX_MAGNITUDE:
                raise InvalidField(
                    f"rows[{i}].{name}",
                    f"{value!r} is out of range: numbers must be within ±{MAX_MAGNITUDE:.3g}",
                )


def row_keys(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every key the rows use, in the order they first appear."""
    return list(dict.fromkeys(key for row in rows for key in row))


def notes(sent: Iterable[str], record: models_pb2.Model) -> list[str]:
    """The warnings about what a prediction sent, by name: what it sent that the model does not
    take (ignored), and the features it left out altogether (blank in every row, for a model
    that takes blanks; the checks refused them for the others)."""
    given = set(sent)
    features = [f.name for f in record.features]
    if given.issuperset(features) and len(given) == len(features):
        return []  # what every well-formed request sends: nothing to say
    found = []
    ignored = sorted(given.difference(features))
    if ignored:
        found.append(
            f"ignored {listing(ignored)}: not {'a feature' if len(ignored) == 1 else 'features'} "
            f"of this model (its features: {listing(features)})"
        )
    fills = fill_values(record)
    for name in features:
        if name in given:
            continue
        if name in fills:
            how = f"filled with its imputed value {quote_value(fills[name])}"
        else:
            how = f"which {_estimator(record)} takes as it is"
        found.append(f"feature {name} was not sent: it is blank in every row, {how}")
    return found


def _estimator(record: models_pb2.Model) -> str:
    return record.estimator if record.estimator in ESTIMATORS else "the estimator"
