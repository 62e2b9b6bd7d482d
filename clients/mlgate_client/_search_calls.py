"""``MLGateClient.search`` and ``submit_search`` (JobService.Search): a hyperparameter search
whose candidates are cross-validated on the workers, the best refit and registered like a Train.
``mlgate search`` prints its leaderboard (``_search_command``). No numpy or scikit-learn."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format, struct_pb2

from mlgate.v1 import jobs_pb2
from mlgate_client._requests import train_request
from mlgate_client._streams import EventCallback, EventStreams

if TYPE_CHECKING:
    from collections.abc import Generator

__all__ = ["SearchCalls", "SearchCandidate", "SearchResult", "params_of", "search_request"]


def params_of(struct: struct_pb2.Struct) -> dict[str, Any]:
    """Parameters as scikit-learn takes them: whole numbers as ints (JSON has only floats)."""
    params = json_format.MessageToDict(struct)
    # Sorted, as ParameterGrid sorts them: a Struct keeps no order.
    return {
        key: int(value) if isinstance(value, float) and value.is_integer() else value
        for key, value in sorted(params.items())
    }


@dataclass(frozen=True)
class SearchCandidate:
    """One candidate's cross-validated score at one rung (``cv_results_``'s row): ``mean`` and
    ``std`` are NaN and ``error`` says why when it could not be fitted."""

    params: dict[str, Any]
    mean: float
    std: float
    rank: int
    fit_seconds: float
    rung: int
    resources: int
    error: str
    fold_scores: tuple[float, ...]
    job_id: str

    @classmethod
    def from_proto(cls, row: jobs_pb2.SearchCandidate) -> SearchCandidate:
        return cls(
            params=params_of(row.params),
            mean=row.mean_score,
            std=row.std_score,
            rank=row.rank,
            fit_seconds=row.fit_seconds,
            rung=row.rung,
            resources=row.resources,
            error=row.error,
            fold_scores=tuple(row.fold_scores),
            job_id=row.job_id,
        )


@dataclass(frozen=True)
class SearchResult:
    """A finished search: the best candidate's parameters and mean CV score, the model refit
    with them (id, name, version and holdout metrics) and every candidate, as ranked."""

    job_id: str
    best_params: dict[str, Any]
    best_score: float
    scoring: str
    model_id: str
    model_name: str
    model_version: int
    metrics: dict[str, float]
    refit_job_id: str
    candidates: tuple[SearchCandidate, ...]

    @classmethod
    def from_event(cls, event: jobs_pb2.JobEvent) -> SearchResult:
        result = event.search_result
        return cls(
            job_id=event.job_id,
            best_params=params_of(result.best_params),
            best_score=result.best_score,
            scoring=result.scoring,
            model_id=result.model_id,
            model_name=result.model_name,
            model_version=result.model_version,
            metrics=dict(result.metrics),
            refit_job_id=result.refit_job_id,
            candidates=tuple(SearchCandidate.from_proto(row) for row in result.candidates),
        )

    def leaderboard(self) -> list[SearchCandidate]:
        """The candidates best first (the last rung's ahead of earlier ones for halving)."""
        return sorted(
            self.candidates,
            key=lambda c: (-c.rung, math.isnan(c.mean), -c.mean if not math.isnan(c.mean) else 0),
        )


def search_request(
    dataset_id: str,
    target: str,
    space: Mapping[str, Any],
    *,
    features: Sequence[str] = (),
    estimator: str = "",
    params: Mapping[str, Any] | None = None,
    n_candidates: int = 0,
    cv_folds: int = 0,
    scoring: str = "",
    max_parallel: int = 0,
    halving: Mapping[str, Any] | None = None,
    test_size: float | None = None,
    random_seed: int | None = None,
    model_name: str = "",
) -> jobs_pb2.SearchRequest:
    """A SearchRequest; ``halving`` takes the Halving fields by name (resource, min_resources,
    max_resources, factor)."""
    train = train_request(
        dataset_id, target, features, estimator, params, None, test_size, random_seed
    )
    train.model_name = model_name
    request = jobs_pb2.SearchRequest(
        train=train,
        n_candidates=n_candidates,
        cv_folds=cv_folds,
        scoring=scoring,
        max_parallel=max_parallel,
    )
    request.space.update(dict(space))
    if halving is not None:
        request.halving.CopyFrom(jobs_pb2.Halving(**halving))
    return request


class SearchCalls(EventStreams):
    """Mixed into MLGateClient, which provides the stub, the timeout and ``watch``."""

    if TYPE_CHECKING:

        def watch(self, job_id: str, after_seq: int = 0) -> Generator[jobs_pb2.JobEvent]: ...

    def wait_search(self, job_id: str, on_event: EventCallback | None = None) -> SearchResult:
        """Wait for a search (from ``submit_search``) to end and return its result."""
        return SearchResult.from_event(self._finish(self.watch(job_id), on_event))

    def search(
        self,
        dataset_id: str,
        target: str,
        space: Mapping[str, Any],
        *,
        on_event: EventCallback | None = None,
        **options: Any,
    ) -> SearchResult:
        """Search hyperparameters and wait for the result. ``space`` maps each parameter to a
        list of values (a grid), or with ``n_candidates`` to a distribution (``{"low": a,
        "high": b, "log": bool, "int": bool}`` or ``{"choice": [...]}``). ``options``:
        features, estimator, params (fixed), n_candidates, cv_folds (default 5), scoring
        (default r2 or accuracy), max_parallel, halving ({"resource": "n_estimators",
        "min_resources": 10, "max_resources": 400, "factor": 3}), test_size, random_seed and
        model_name (the refit model is registered as its next version). ``on_event`` sees each
        event (RUNNING ones carry ``search_progress``). Raises JobFailed (every trial failed)
        or JobCancelled. docs/search.md."""
        request = search_request(dataset_id, target, space, **options)
        final = self._finish(self._events(lambda: self._jobs.Search(request)), on_event)
        return SearchResult.from_event(final)

    def submit_search(
        self, dataset_id: str, target: str, space: Mapping[str, Any], **options: Any
    ) -> str:
        """Submit a search and return its job id without waiting; see ``wait`` and ``watch``."""
        request = search_request(dataset_id, target, space, **options)
        return self._submitted(lambda: self._jobs.Search(request, timeout=self._timeout), "Search")
