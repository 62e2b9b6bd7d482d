"""What a scoring job (``JobService.Score``) writes and how it splits its rows, shared by the
gateway (which checks the request and plans the shards) and the workers (which write them), so
both name the output's columns the same way. Pure: no numpy, no pandas.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "DEFAULT_SHARD_ROWS",
    "FORMATS",
    "MAX_SHARDS",
    "PREDICTION",
    "label_text",
    "output_columns",
    "proba_column",
    "shard_ranges",
]

PREDICTION = "prediction"
FORMATS = ("csv", "parquet")
#: Rows per shard when the request leaves it to the gateway: large enough that a shard's fixed
#: cost (a job's round trip, one part object) is small beside its rows, small enough that a
#: million rows spread over every worker and a lost shard costs little to redo.
DEFAULT_SHARD_ROWS = 50_000
#: At most this many shards: each is a job record and a part object.
MAX_SHARDS = 1_000


def label_text(label: Any) -> str:
    """A class label as a column name part: ``true``/``false``, integral numbers without a
    fraction (a manifest's labels are JSON numbers, the estimator's numpy integers)."""
    if isinstance(label, bool):
        return "true" if label else "false"
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)


def proba_column(label: Any) -> str:
    """The output column holding each row's probability of class ``label``."""
    return f"proba_{label_text(label)}"


def output_columns(kept: Sequence[str], classes: Iterable[Any]) -> list[str]:
    """The output's columns in order: the kept input columns, ``prediction``, then one
    probability column per class of a classifier (as ModelInfer's ``predict_proba``, every
    classifier mlgate trains has them)."""
    return [*kept, PREDICTION, *(proba_column(label) for label in classes)]


def shard_ranges(rows: int, shard_rows: int) -> list[tuple[int, int]]:
    """``[start, end)`` row ranges covering ``rows`` in order, each of ``shard_rows`` (0 means
    the default) but the last; widened so there are at most ``MAX_SHARDS``."""
    size = shard_rows or DEFAULT_SHARD_ROWS
    size = max(size, -(-rows // MAX_SHARDS), 1)
    return [(start, min(start + size, rows)) for start in range(0, rows, size)]
