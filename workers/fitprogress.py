"""Fitting with real progress, where the estimator allows it, and the same model as one ``fit``.

* Forests grow in steps with ``warm_start``: each step adds trees whose seeds come from the same
  random sequence a one-shot fit draws, so the forest is identical (a test holds it so). The first
  step is small; later ones are sized to take about half a second each. A forest small enough to
  fit in well under a second is fitted in one call: steps would only add overhead.
* Gradient boosting reports each stage through its ``monitor``.
* Other estimators report nothing between the start and the end of their fit.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import pandas as pd
from sklearn.ensemble import BaseEnsemble
from sklearn.ensemble._forest import BaseForest
from sklearn.ensemble._gb import BaseGradientBoosting
from sklearn.pipeline import Pipeline

__all__ = ["fit_reporting", "grow_forest"]

# Trees times training rows below which a forest is fitted in one call (about a second's work).
_ONE_SHOT_WORK = 1_000_000
# How long each later growth step should take.
_STEP_SECONDS = 0.5

Report = Callable[[float], None]  # the share of the fit done, from 0 to 1


def fit_reporting(
    model: Any, estimator: Any, X: pd.DataFrame, y: pd.Series, report: Report, *, cores: int
) -> None:
    """Fit ``model`` (``estimator``, or a Pipeline ending with it), calling ``report`` as it goes."""
    if isinstance(estimator, BaseForest) and not estimator.warm_start:
        if estimator.n_estimators * len(X) < _ONE_SHOT_WORK:
            model.fit(X, y)
            return
        features = model[:-1].fit_transform(X, y) if isinstance(model, Pipeline) else X
        grow_forest(estimator, features, y, report, cores=cores)
    elif isinstance(estimator, BaseGradientBoosting):
        total = estimator.n_estimators

        def monitor(stage: int, _estimator: Any, _locals: Any) -> bool:
            report((stage + 1) / total)
            return False  # never stop early

        key = "estimator__monitor" if isinstance(model, Pipeline) else "monitor"
        model.fit(X, y, **{key: monitor})
    else:
        model.fit(X, y)


def grow_forest(
    forest: BaseEnsemble, X: Any, y: Any, report: Report, *, cores: int, first_step: int = 0
) -> None:
    """Fit ``forest`` to its ``n_estimators`` in warm-started steps, reporting after each."""
    total = forest.n_estimators
    step = first_step or min(total, max(cores, total // 50))
    grown = 0
    forest.set_params(warm_start=True)
    try:
        with warnings.catch_warnings():
            # Class weight presets warn under warm_start for data that changes between calls;
            # ours is the same data every step.
            warnings.filterwarnings("ignore", message="class_weight presets", category=UserWarning)
            while grown < total:
                size = min(total, grown + step)
                started = time.perf_counter()
                forest.set_params(n_estimators=size)
                forest.fit(X, y)
                per_tree = (time.perf_counter() - started) / (size - grown)
                grown = size
                report(grown / total)
                if not first_step:
                    step = max(cores, int(_STEP_SECONDS / max(per_tree, 1e-6)))
    finally:
        forest.set_params(warm_start=False, n_estimators=total)
