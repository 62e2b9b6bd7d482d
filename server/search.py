"""Hyperparameter search: the SEARCH job's plan (``server.fanout``) and its submission.

A search's candidates (``server.search_space``) are scored by TRIAL jobs, one per candidate and
rung, on the workers (``workers.trials``); the best is refit as a TRAIN job, its child, which
registers the model like any Train. Ranks, means and stds are computed as ``cv_results_`` has
them: mean and std (ddof 0) of the fold scores, ``rankdata(-mean, method="min")`` with failed
trials (NaN) ranked last; the best is the first candidate ranked 1, or for halving the first best
mean of the last rung, in the order ``_top_k`` left that rung's candidates. docs/search.md.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlgate.events import is_terminal
from mlgate.jobs import from_struct
from mlgate.v1 import jobs_pb2
from server.fanout import Step, new_child
from server.search_space import Schedule, candidates, schedule, to_struct

__all__ = ["SearchPlan", "rank"]

_CACHED = 256


@dataclass
class _Row:
    """One candidate scored at one rung, as a SearchCandidate will show it."""

    candidate: int
    rung: int
    params: dict[str, Any]
    job: jobs_pb2.Job | None
    resources: int = 0

    @property
    def done(self) -> bool:
        return self.job is not None and is_terminal(self.job.state)

    @property
    def scores(self) -> list[float]:
        if self.job is None or self.error:
            return []
        return list(self.job.last_event.trial_result.fold_scores)

    @property
    def error(self) -> str:
        job = self.job
        if job is None or not is_terminal(job.state):
            return ""
        if job.state == jobs_pb2.JOB_STATE_SUCCEEDED:
            result = job.last_event.trial_result
            return result.error or ("" if result.fold_scores else "the trial scored no fold")
        if job.state == jobs_pb2.JOB_STATE_CANCELLED:
            return "the trial was cancelled"
        return job.last_event.error.message or "the trial failed"

    @property
    def mean(self) -> float:
        scores = self.scores
        if not scores:
            return math.nan
        total = 0.0
        for score in scores:  # in order, as numpy sums a few values
            total += score
        return total / len(scores)

    @property
    def std(self) -> float:
        scores = self.scores
        if not scores:
            return math.nan
        mean = self.mean
        total = 0.0
        for score in scores:
            total += (score - mean) ** 2
        return math.sqrt(total / len(scores))


def rank(means: Sequence[float]) -> list[int]:
    """``cv_results_``'s ranks: ``rankdata(-mean, method="min")``, NaN below every score."""
    if all(math.isnan(m) for m in means):
        return [1] * len(means)
    floor = min(m for m in means if not math.isnan(m)) - 1
    filled = [floor if math.isnan(m) else m for m in means]
    return [1 + sum(1 for other in filled if other > m) for m in filled]


def _top_k(rows: Sequence[_Row], k: int) -> list[_Row]:
    """``HalvingGridSearchCV``'s ``_top_k``: the best ``k``, best last, ties broken by numpy's
    ``argsort`` as there (its order need not be stable), NaN first."""
    import numpy as np  # lazy, as the candidates' scikit-learn (server.search_space.candidates)

    scores = np.asarray([row.mean for row in rows])
    order = np.roll(np.argsort(scores), np.count_nonzero(np.isnan(scores)))
    return [rows[int(i)] for i in order[-k:]] if k else []


class SearchPlan:
    """The SEARCH kind's ``FanOutPlan``."""

    def __init__(self) -> None:
        self._candidates: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    def candidates(self, parent: jobs_pb2.Job) -> list[dict[str, Any]]:
        found = self._candidates.get(parent.id)
        if found is None:
            seed = parent.search.train.random_seed
            found = self._candidates[parent.id] = candidates(parent.search, seed)
            while len(self._candidates) > _CACHED:
                self._candidates.popitem(last=False)
        return found

    def advance(self, parent: jobs_pb2.Job, children: Sequence[jobs_pb2.Job]) -> Step:
        request = parent.search
        found = self.candidates(parent)
        by_id = {child.id: child for child in children}
        plan = (
            schedule(request.halving, len(found))
            if request.HasField("halving")
            else Schedule("", (0,), (len(found),), 3)
        )
        rows: list[_Row] = []
        current = [_Row(i, 0, params, None) for i, params in enumerate(found)]
        for rung, resources in enumerate(plan.resources):
            wanted = []
            for row in current:
                params = dict(row.params)
                if plan.resource and plan.resource != "n_samples":
                    params[plan.resource] = resources
                trial = self._trial(parent, row.candidate, rung, params, resources, plan.resource)
                wanted.append(trial)
                rows.append(_Row(row.candidate, rung, params, by_id.get(trial.id), resources))
            scored = rows[-len(wanted) :]
            if not all(row.done for row in scored):
                return Step(
                    children=wanted,
                    progress=self._progress(rows, plan, jobs_pb2.STAGE_FANNING_OUT),
                    max_parallel=request.max_parallel,
                )
            if rung + 1 < len(plan.resources):
                current = _top_k(scored, math.ceil(len(scored) / plan.factor))
        return self._refit(parent, rows, plan, by_id)

    def _trial(
        self,
        parent: jobs_pb2.Job,
        candidate: int,
        rung: int,
        params: dict[str, Any],
        resources: int,
        resource: str,
    ) -> jobs_pb2.Job:
        request = parent.search
        child = new_child(parent, jobs_pb2.JOB_KIND_TRIAL, f"trial/{rung}/{candidate}")
        train = child.trial.train
        train.CopyFrom(request.train)
        train.params.update(params)
        child.trial.params.CopyFrom(to_struct(params))
        child.trial.cv_folds = request.cv_folds
        child.trial.scoring = request.scoring
        child.trial.candidate = candidate
        child.trial.rung = rung
        child.trial.resource = resource
        child.trial.resources = resources
        return child

    def _refit(
        self,
        parent: jobs_pb2.Job,
        rows: list[_Row],
        plan: Schedule,
        by_id: dict[str, jobs_pb2.Job],
    ) -> Step:
        table = _table(rows)
        if all(row.error for row in rows):
            first = rows[0].error if rows else "no candidates"
            message = f"every trial failed; the first: {first}"
            return Step(error=jobs_pb2.JobError(code="FAILED_PRECONDITION", message=message))
        last = [row for row in rows if row.rung == len(plan.resources) - 1]
        means = [row.mean for row in last]
        if all(math.isnan(m) for m in means):
            best = last[0]
        else:
            best = last[
                max(range(len(means)), key=lambda i: (not math.isnan(means[i]), means[i], -i))
            ]
        refit = new_child(parent, jobs_pb2.JOB_KIND_TRAIN, "refit")
        refit.train.CopyFrom(parent.search.train)
        refit.train.params.update(best.params)
        found = by_id.get(refit.id)
        if found is None or not is_terminal(found.state):
            progress = self._progress(rows, plan, jobs_pb2.STAGE_REFITTING)
            return Step(children=[refit], progress=progress)
        if found.state != jobs_pb2.JOB_STATE_SUCCEEDED:
            why = found.last_event.error.message or found.last_event.message or "it was cancelled"
            code = found.last_event.error.code or "ABORTED"
            message = f"refitting the best candidate (job {found.id}) failed: {why}"
            return Step(error=jobs_pb2.JobError(code=code, message=message))
        trained = found.last_event.train_result
        result = jobs_pb2.SearchResult(
            best_params=to_struct(best.params),
            best_score=best.mean,
            model_id=trained.model_id,
            model_name=trained.model_name,
            model_version=trained.model_version,
            metrics=trained.metrics,
            candidates=table,
            scoring=_scoring(rows),
            refit_job_id=found.id,
        )
        return Step(result={"search_result": result, "progress": 1.0})

    def _progress(self, rows: list[_Row], plan: Schedule, stage: int) -> dict[str, Any]:
        done = [row for row in rows if row.done]
        progress = jobs_pb2.SearchProgress(trials_done=len(done), trials_total=plan.total)
        if done:
            latest = max(done, key=lambda r: r.job.update_time.ToNanoseconds() if r.job else 0)
            progress.trial.CopyFrom(_candidate(latest, 0))
            top = max(row.rung for row in done)
            scored = [row for row in done if row.rung == top and not math.isnan(row.mean)]
            progress.rung = top
            if scored:
                best = max(scored, key=lambda r: r.mean)
                progress.best_params.CopyFrom(to_struct(best.params))
                progress.best_score = best.mean
        fraction = 0.95 * len(done) / max(1, plan.total)
        return {"stage": stage, "progress": fraction, "search_progress": progress}


def _candidate(row: _Row, rank_: int) -> jobs_pb2.SearchCandidate:
    result = row.job.last_event.trial_result if row.job is not None else None
    return jobs_pb2.SearchCandidate(
        params=to_struct(row.params),
        mean_score=row.mean,
        std_score=row.std,
        rank=rank_,
        fit_seconds=result.fit_seconds if result is not None else 0.0,
        rung=row.rung,
        error=row.error,
        fold_scores=row.scores,
        resources=row.resources,
        job_id=row.job.id if row.job is not None else "",
    )


def _table(rows: list[_Row]) -> list[jobs_pb2.SearchCandidate]:
    ranks = rank([row.mean for row in rows])
    return [_candidate(row, r) for row, r in zip(rows, ranks, strict=True)]


def _scoring(rows: list[_Row]) -> str:
    for row in rows:
        if row.job is not None and row.job.last_event.trial_result.scoring:
            return row.job.last_event.trial_result.scoring
    return ""


def params_of(job: jobs_pb2.Job) -> dict[str, Any]:
    return from_struct(job.trial.params)
