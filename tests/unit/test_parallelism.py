"""Parameters that choose parallelism are capped by the worker, not trusted from the request."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
from sklearn.datasets import load_diabetes

from mlgate import jobs
from mlgate.v1 import datasets_pb2, jobs_pb2
from workers import training
from workers.parallelism import cap_jobs, fit_cores


def _plan(frame: pd.DataFrame, params: dict[str, int]) -> jobs.Plan:
    schema = datasets_pb2.Dataset(id="diabetes", rows=len(frame))
    for name in frame.columns:
        schema.columns.add(name=str(name), dtype="numeric")
    request = jobs_pb2.TrainRequest(dataset_id="diabetes", target="target")
    request.params.update(params)
    return jobs.plan(request, schema)


class _PeakThreads:
    """The most threads alive at once while the block runs, sampled every millisecond."""

    def __init__(self) -> None:
        self.peak = 0
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._done.wait(0.001):
            self.peak = max(self.peak, threading.active_count())

    def __enter__(self) -> _PeakThreads:
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._sampler.join()


@pytest.mark.parametrize("n_jobs", [1000, -1])
def test_n_jobs_is_capped_at_the_cores_given_to_a_fit(n_jobs: int) -> None:
    frame = load_diabetes(as_frame=True).frame
    plan = _plan(frame, {"n_jobs": n_jobs, "n_estimators": 200})
    before = threading.active_count()
    with _PeakThreads() as threads:
        trained = training.fit(frame, plan, lambda stage, fraction: None, cores=2)
    assert trained.params["n_jobs"] == 2
    assert trained.estimator.get_params()["n_jobs"] == 2
    # Besides the sampler, joblib's thread pool: two workers and the pool's three handler threads
    # (uncapped, this fit starts a thread per tree).
    assert threads.peak <= before + 1 + 2 + 3


def test_a_loaded_models_n_jobs_is_capped_too() -> None:
    frame = load_diabetes(as_frame=True).frame
    trained = training.fit(frame, _plan(frame, {"n_estimators": 5}), lambda s, f: None, cores=4)
    model = trained.estimator
    model.set_params(n_jobs=1000)
    assert cap_jobs(model, 3) == {"n_jobs": 3}
    assert cap_jobs(model, 3) == {}


def test_fit_cores_share_the_machine_unless_configured() -> None:
    assert fit_cores(5, train_concurrency=4) == 5
    assert fit_cores(0, train_concurrency=1) >= 1
    assert fit_cores(0, train_concurrency=10_000) == 1
