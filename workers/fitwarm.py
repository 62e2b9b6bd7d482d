"""Imported by the fit pool's forkserver only (``workers.fitpool``): it warms the process that
every fit process is forked from, so a fresh one (after a cancel, a time limit or a crash) starts
its first fit as fast as its predecessor did. The built-in datasets are loaded (a fork shares
them), and a tiny fit and scoring run once, so scikit-learn's lazy imports are done.

Importing it anywhere else would only cost that time: nothing imports it but the forkserver.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor

from mlgate.ids import BUILTIN_DATASETS
from storage.datasets import builtin_frame
from workers.paramnames import cache_param_names
from workers.training import metrics_for

__all__: list[str] = []


def _warm() -> None:
    cache_param_names()  # before forking: every fit process shares the cache's fill
    for dataset_id in BUILTIN_DATASETS:
        builtin_frame(dataset_id)
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(40, 3)), columns=["a", "b", "c"])
    y = pd.Series(rng.normal(size=40))
    model = RandomForestRegressor(n_estimators=4, max_depth=3, n_jobs=2, random_state=0).fit(X, y)
    metrics_for(model, "regression", X, y)


_warm()
