"""Each feature's reference distribution, the training part's, that input drift is measured
against (``Model.input_reference``; the gateway's ``server.drift`` bins served inputs the same way).

It describes the raw inputs as serving receives them: the training rows after the split and
before any imputation, so a feature whose blanks the model fills is described by its values, not
its fill. Blanks are left out on both sides (the shares are of the rows with a value).

- Numeric and integer features: the deciles' edges (the 10th to the 90th percentile, numpy's
  linear interpolation) and the share of the rows in each of the ten bins they make. A value
  equal to an edge falls in the bin below it (``numpy.searchsorted(side="left")``, as Python's
  ``bisect_left`` at the gateway). Ties make the shares differ from a tenth (an integer feature
  with few values puts many rows on one edge), so they are stored, not assumed.
- String and boolean features: each category's share, booleans as "true" and "false". Only the
  ``MAX_CATEGORIES`` most frequent are kept; the rest of the rows, with categories the training
  part never had, make the gateway's "other" bin, whose reference share is what the kept ones
  leave.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from mlgate.v1 import models_pb2

__all__ = ["DECILES", "MAX_CATEGORIES", "reference"]

#: The percentiles whose values are the numeric bins' edges.
DECILES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
#: Categories kept per feature, most frequent first: bounds the manifest and the gateway's bins.
MAX_CATEGORIES = 100


def reference(
    frame: pd.DataFrame, dtypes: Mapping[str, str]
) -> dict[str, models_pb2.FeatureReference]:
    """Each feature's reference from ``frame`` (the training rows, as they came); a feature with
    no value in any row has none."""
    found: dict[str, models_pb2.FeatureReference] = {}
    for name, dtype in dtypes.items():
        if name not in frame.columns:
            continue
        column = frame[name]
        described = (
            _numeric(column) if dtype in ("numeric", "integer") else _categorical(column, dtype)
        )
        if described is not None:
            found[name] = described
    return found


def _numeric(column: pd.Series) -> models_pb2.FeatureReference | None:
    values = pd.to_numeric(column, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    edges = np.percentile(values, DECILES)
    bins = np.searchsorted(edges, values, side="left")
    counts = np.bincount(bins, minlength=len(DECILES) + 1)
    return models_pb2.FeatureReference(edges=edges.tolist(), shares=(counts / values.size).tolist())


def _category(value: object, dtype: str) -> str:
    if dtype == "boolean":
        if isinstance(value, bool | np.bool_):
            return "true" if value else "false"
        return str(value).lower()
    return str(value)


def _categorical(column: pd.Series, dtype: str) -> models_pb2.FeatureReference | None:
    present = column.dropna()
    texts = pd.Series([_category(v, dtype) for v in present.tolist()], dtype=object)
    texts = texts[texts != ""]
    if texts.empty:
        return None
    counts = texts.value_counts()
    # Most frequent first, equal counts by name: the same data gives the same kept categories.
    ordered = sorted(counts.items(), key=lambda item: (-int(item[1]), str(item[0])))
    total = len(texts)
    return models_pb2.FeatureReference(
        frequencies={str(k): int(n) / total for k, n in ordered[:MAX_CATEGORIES]}
    )
