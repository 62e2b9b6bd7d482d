"""The reference ``make bench`` holds mlgate's training throughput to: a plain Celery task doing a
seed training job's work (split, fit the forest, score the holdout, pickle the model to disk).

Run by ``bench.train_throughput`` as ``celery -A bench.celery_reference worker``; the broker URL and the
directory the models are pickled into come from the environment, read when the worker imports this
module (its entry point). Results go back through the same Redis database.
"""

from __future__ import annotations

import functools
import math
import os
import pickle
import time
import uuid
from pathlib import Path
from typing import Any

from celery import Celery
from sklearn import datasets
from sklearn import metrics as sk_metrics
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import train_test_split

__all__ = ["TASK", "app", "train"]

TASK = "bench.celery_reference.train"

app = Celery(
    "mlgate-bench",
    broker=os.environ.get("MLGATE_BENCH_CELERY_URL", "redis://127.0.0.1:6379/9"),
    backend=os.environ.get("MLGATE_BENCH_CELERY_URL", "redis://127.0.0.1:6379/9"),
)
app.conf.update(result_expires=600, broker_connection_retry_on_startup=True)


@functools.cache
def _diabetes() -> Any:
    # mlgate's workers keep the built-in datasets in memory too.
    return datasets.load_diabetes(as_frame=True).frame


@app.task(name=TASK)  # type: ignore[untyped-decorator]
def train(
    features: list[str], params: dict[str, Any], seed: int, test_size: float
) -> dict[str, Any]:
    """Fit and score as an mlgate training job does; the holdout metrics and the fit's seconds."""
    frame = _diabetes()
    X_train, X_test, y_train, y_test = train_test_split(
        frame[features], frame["target"], test_size=test_size, random_state=seed
    )
    started = time.perf_counter()
    model = RandomForestRegressor(random_state=seed, **params).fit(X_train, y_train)
    predicted = model.predict(X_test)
    metrics = {
        "rmse": float(math.sqrt(sk_metrics.mean_squared_error(y_test, predicted))),
        "mae": float(sk_metrics.mean_absolute_error(y_test, predicted)),
        "r2": float(sk_metrics.r2_score(y_test, predicted)),
    }
    fit_seconds = time.perf_counter() - started
    out = Path(os.environ["MLGATE_BENCH_CELERY_MODELS"]) / f"{uuid.uuid4().hex}.pkl"
    with out.open("wb") as file:
        pickle.dump(model, file, protocol=pickle.HIGHEST_PROTOCOL)
    return {"metrics": metrics, "fit_seconds": fit_seconds}
