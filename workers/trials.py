"""A search's TRIAL jobs (``server.search``): one candidate scored by k-fold cross-validation.

This is the worker side (``TrialRunner``): it plans the trial's TrainRequest as a Train is planned and runs it
in a fit process, like a Train, so a trial is cancelled, bounded and retried like one. The fit
process (``workers.crossval.score``) makes Train's holdout split, then scores the candidate on the training part
exactly as ``GridSearchCV``'s ``_fit_and_score`` does: ``KFold(n_splits, shuffle=True,
random_state=seed)`` (``StratifiedKFold`` for classification), a clone fitted per fold, scored
with ``get_scorer(scoring)``; for halving on ``n_samples`` each fold is subsampled as
``HalvingGridSearchCV``'s ``_SubsampleMetaSplitter`` does. A candidate that cannot be fitted (a
bad parameter mix) is a TrialResult with ``error``: the trial still succeeds, and the search
ranks it last, as ``error_score=nan`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlgate.errors import InvalidField
from mlgate.jobs import plan
from mlgate.v1 import jobs_pb2
from storage.datasets import DatasetCatalog
from workers.attempt_events import AttemptEvents
from workers.fitpool import FitPool, FitStopped
from workers.messages import TrialTask
from workers.running import Cancelled
from workers.settings import WorkerSettings

__all__ = ["TrialRunner"]


class TrialRunner:
    """Runs TRIAL jobs in the worker's fit processes."""

    def __init__(
        self, pool: FitPool, catalog: DatasetCatalog, settings: WorkerSettings, cores: int
    ) -> None:
        self._pool = pool
        self._catalog = catalog
        self._settings = settings
        self._cores = cores

    def run(
        self, job: jobs_pb2.Job, events: AttemptEvents, check: Callable[[], None]
    ) -> dict[str, Any]:
        """The fields of the trial's SUCCEEDED event; ``check()`` raises Cancelled once the job
        is cancelled."""
        spec = job.trial
        schema = self._catalog.describe(spec.train.dataset_id)
        try:
            checked = plan(spec.train, schema)
        except InvalidField as exc:
            # The gateway checked each value; a mix it could not judge is the candidate's fault.
            result = jobs_pb2.TrialResult(error=str(exc), scoring=spec.scoring)
            return {"trial_result": result}
        task = TrialTask(
            job_id=job.id,
            plan=checked,
            dataset_sha256=schema.sha256,
            cores=self._cores,
            memory_limit=self._settings.train_memory_limit,
            cv_folds=spec.cv_folds or 5,
            scoring=spec.scoring,
            resource=spec.resource,
            resources=spec.resources,
        )
        timeout = self._settings.train_timeout
        if spec.train.HasField("timeout_seconds"):
            timeout = min(timeout, spec.train.timeout_seconds)

        def stopped() -> bool:
            try:
                check()
            except Cancelled:
                return True
            return False

        try:
            scored = self._pool.run(task, events.running, stop=stopped, timeout=timeout)
        except FitStopped:
            raise Cancelled(job.id) from None
        result = jobs_pb2.TrialResult(
            fold_scores=scored.fold_scores,
            fit_seconds=scored.fit_seconds,
            error=scored.error,
            scoring=scored.scoring,
        )
        return {"trial_result": result}
