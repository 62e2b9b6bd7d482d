"""A search candidate's cross-validation, in a fit process (``workers.trials`` runs it there):
Train's holdout split, then ``GridSearchCV``'s ``_fit_and_score`` on the training part."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
from sklearn.base import clone
from sklearn.metrics import get_scorer
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

# Private to scikit-learn, pinned at 1.9.1 (pyproject.toml): reused rather than rewritten, so a
# halving search subsamples each fold exactly as HalvingGridSearchCV does.
from sklearn.model_selection._search_successive_halving import _SubsampleMetaSplitter

from mlgate.errors import InvalidField
from mlgate.estimators import CLASSIFICATION
from mlgate.v1 import jobs_pb2
from workers import imputation
from workers.estimators import build
from workers.messages import TrialScored, TrialTask
from workers.parallelism import cap_jobs
from workers.training import _with_encoding, infer_task

__all__ = ["score"]

log = logging.getLogger(__name__)

Progress = Callable[[int, float], None]


def score(frame: pd.DataFrame, task: TrialTask, progress: Progress) -> TrialScored:
    """Cross-validate the task's candidate on the training part of Train's split (in a fit
    process). Data that cannot be used raises, as for a Train; a candidate that cannot be fitted
    is a TrialScored with ``error``."""
    checked = task.plan
    missing = [c for c in (*checked.features, checked.target) if c not in frame.columns]
    if missing:
        raise InvalidField("train", f"dataset {checked.dataset_id} has no columns {missing}")
    X, y = frame[list(checked.features)], frame[checked.target]
    if y.isna().any():
        raise InvalidField("target", f"column {checked.target} has missing values")
    kind = checked.task or infer_task(y)
    scoring = task.scoring or ("accuracy" if kind == CLASSIFICATION else "r2")
    X_train, _, y_train, _ = train_test_split(
        X, y, test_size=checked.test_size, random_state=checked.seed
    )
    splitter = StratifiedKFold if kind == CLASSIFICATION else KFold
    cv: Any = splitter(n_splits=task.cv_folds, shuffle=True, random_state=checked.seed)
    if task.resource == "n_samples":
        cv = _SubsampleMetaSplitter(
            base_cv=cv,
            fraction=task.resources / len(X_train),
            subsample_test=True,
            random_state=checked.seed,
        )
    started = time.perf_counter()
    try:
        estimator, _ = build(checked.estimator, kind, checked.params, checked.seed)
        model = _with_encoding(estimator, checked.dtypes)
        cap_jobs(model, task.cores)
        folds = list(cv.split(X_train, y_train))
        scorer = get_scorer(scoring)
        scores: list[float] = []
        for index, (fit_rows, test_rows) in enumerate(folds):
            X_fit, X_test = X_train.iloc[fit_rows], X_train.iloc[test_rows]
            y_fit, y_test = y_train.iloc[fit_rows], y_train.iloc[test_rows]
            if checked.impute is not None:
                # Learned from the fold's fitting rows only, as a pipeline's imputer would be.
                learned = imputation.learn(X_fit, checked.dtypes, checked.impute)
                X_fit = imputation.fill_frame(X_fit, learned)
                X_test = imputation.fill_frame(X_test, learned)
            fold = clone(model)
            fold.fit(X_fit, y_fit)
            scores.append(float(scorer(fold, X_test, y_test)))
            progress(jobs_pb2.STAGE_FITTING, 0.1 + 0.85 * (index + 1) / len(folds))
    except MemoryError:
        raise
    except Exception as exc:
        # As error_score=nan: the candidate ranks last, and the search goes on.
        log.info("trial %s: the candidate cannot be fitted: %s", task.job_id, exc)
        seconds = time.perf_counter() - started
        return TrialScored((), seconds, f"{type(exc).__name__}: {exc}", scoring)
    return TrialScored(tuple(scores), time.perf_counter() - started, "", scoring)
