"""A worker SIGKILLed in the middle of a search, on RabbitMQ and on Redis: its trial is tried
again on the other worker, and the search SUCCEEDS with scikit-learn's result, as undisturbed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import GridSearchCV

from mlgate_client import MLGateClient
from mlgate_client._search_calls import search_request
from tests.support.cluster import Cluster, delete_cluster_namespace
from tests.support.gateway_calls import jobs
from tests.support.search_checks import assert_same_as_sklearn, builtin_frame, holdout, sklearn_cv
from tests.support.waiting import wait_for

FAST_RECLAIM = {"MLGATE_REDIS_HEARTBEAT_TTL": "4", "MLGATE_REDIS_RECLAIM_INTERVAL": "1"}
# Slow enough that a trial is caught running on a 2-core machine.
SPACE = {"n_estimators": [300, 400], "max_depth": [8, 10]}


@pytest.fixture(params=["rabbitmq", "redis"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    env = {"MLGATE_HEARTBEAT_SECONDS": "2", "MLGATE_MAX_ATTEMPTS": "3", **FAST_RECLAIM}
    running = Cluster(tmp_path, request.param, env)
    yield running
    running.stop()
    delete_cluster_namespace(request.param, running.namespace)


@pytest.mark.slow
def test_a_search_survives_a_worker_killed_mid_trial(cluster: Cluster) -> None:
    address = cluster.start_gateway()
    workers = {process.pid: process for process in cluster.start_workers(2)}
    request = search_request("diabetes", "target", SPACE, cv_folds=3, model_name="survivor")
    with MLGateClient(address, timeout=30) as client, grpc.insecure_channel(address) as channel:
        wait_for(lambda: len(client.list_workers()) == 2, 20, "both workers heard")
        stream = jobs(channel).Search(request, timeout=300)
        search_id = next(iter(stream)).event.job_id

        def busy() -> int:
            for worker in client.list_workers():
                if any(r.kind == "trial" and r.stage == "fitting" for r in worker.running):
                    return worker.pid
            return 0

        wait_for(lambda: bool(busy()), 90, "a trial running")
        victim = workers[busy()]
        cluster.kill(victim)
        killed = time.monotonic()
        events = [response.event for response in stream]
        print(
            f"\n{cluster.env['MLGATE_BROKER']}: search ended {time.monotonic() - killed:.1f} s "
            "after the kill"
        )
        trials = list(client.list_jobs(kind="trial", parent=search_id))
    last = events[-1]
    assert last.HasField("search_result"), last
    X_train, _, y_train, _ = holdout(builtin_frame("diabetes"))
    expected = GridSearchCV(
        RandomForestRegressor(max_depth=3, n_estimators=100, random_state=42),
        SPACE,
        cv=sklearn_cv(False, 3),
        scoring="r2",
    ).fit(X_train, y_train)
    assert_same_as_sklearn(last.search_result, expected)
    assert last.search_result.model_version == 1
    assert any(trial.attempt >= 2 for trial in trials), [(t.id, t.attempt) for t in trials]
