"""Categories a model never saw: the one-hot encoder ignores them, and the result says so.

An unseen value of a string or boolean feature encodes as all zeros (``handle_unknown="ignore"``),
so the prediction is made as if the feature were absent. That is a fine default for a service, but
a person reading the result should know, so each such feature gets one warning.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

__all__ = ["unseen_categories"]

_LISTED = 5


def _blank(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def unseen_categories(model: Any, values_of: Callable[[str], Iterable[Any]]) -> list[str]:
    """A warning per categorical feature with values that training never saw, blanks included
    (for an estimator that handles blanks, when training saw none there); ``values_of`` gives a
    feature's values, one per row."""
    if not isinstance(model, Pipeline):
        return []
    warnings = []
    for _, encoder, columns in model.steps[0][1].transformers_:
        if not isinstance(encoder, OneHotEncoder):
            continue
        for column, known in zip(columns, encoder.categories_, strict=True):
            seen = set(known.tolist())
            blank_known = any(_blank(value) for value in seen)
            # Checked rows or columns: a string feature's values are str, a boolean one's bool,
            # a blank NaN.
            blanks = 0
            unseen: Counter[Any] = Counter()
            for value in values_of(column):
                if _blank(value):
                    blanks += not blank_known
                elif value not in seen:
                    unseen[value] += 1
            if blanks:
                warnings.append(
                    f"feature {column}: blank in {_rows(blanks)}, ignored: the model never saw a "
                    "blank there in training, so these rows were predicted as if the feature "
                    "were absent"
                )
            if not unseen:
                continue
            listed = ", ".join(
                f"{value!r} ({_rows(n)})" for value, n in unseen.most_common(_LISTED)
            )
            more = f" and {len(unseen) - _LISTED} more" if len(unseen) > _LISTED else ""
            noun = "category" if len(unseen) == 1 else "categories"
            warnings.append(
                f"feature {column}: unseen {noun} {listed}{more} ignored: the model never saw "
                "them in training, so these rows were predicted as if the feature were absent"
            )
    return warnings
