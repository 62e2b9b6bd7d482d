"""mlgate on a PostgreSQL job store, as operators start it: ``mlgate serve``, and ``mlgate gateway``
with ``mlgate worker`` processes, each with ``MLGATE_STORE_URL=postgresql://...``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import psycopg
import pytest

from mlgate.v1 import jobs_pb2
from tests.support.cluster import Cluster, delete_cluster_namespace
from tests.support.gateway_calls import jobs
from tests.support.postgres import fresh_schema
from tests.support.redis import require_redis
from tests.support.registry_steps import get_model, predict, set_alias, train_named
from tests.support.serving import clean_env, serve_process


@contextmanager
def _deployment(kind: str, tmp_path: Path, store_url: str) -> Iterator[str]:
    """The address of a deployment of ``kind`` on the job store at ``store_url``."""
    if kind == "serve":
        env = clean_env(MLGATE_STORE_URL=store_url)
        with serve_process(tmp_path, env=env) as served:
            yield served.address
        return
    require_redis()
    cluster = Cluster(tmp_path, "redis", {"MLGATE_STORE_URL": store_url})
    try:
        address = cluster.start_gateway()
        cluster.start_worker()
        yield address
    finally:
        cluster.stop()
        delete_cluster_namespace("redis", cluster.namespace)


@pytest.mark.parametrize("kind", ["serve", "gateway"])
def test_train_predict_list_and_name_models_on_postgresql(kind: str, tmp_path: Path) -> None:
    with fresh_schema() as store_url, _deployment(kind, tmp_path, store_url) as address:
        with grpc.insecure_channel(address) as channel:
            trained = train_named(channel, "pg-forest", params={"max_depth": 3})
            assert (trained.model_name, trained.model_version) == ("pg-forest", 1)
            assert set_alias(channel, "pg-forest", "production", 1) == 0
            assert get_model(channel, "pg-forest@production").id == trained.model_id

            predicted = predict(channel, "pg-forest@production")
            assert predicted.model_id == trained.model_id
            assert len(predicted.predictions) == 1

            listed = jobs(channel).ListJobs(jobs_pb2.ListJobsRequest(), timeout=10).jobs
            assert [job.kind for job in listed] == [
                jobs_pb2.JOB_KIND_PREDICT,
                jobs_pb2.JOB_KIND_TRAIN,
            ]
            assert all(job.state == jobs_pb2.JOB_STATE_SUCCEEDED for job in listed)

        # The records are PostgreSQL's, where the operator backs them up.
        with psycopg.connect(store_url) as conn:
            stored = conn.execute("SELECT id FROM jobs ORDER BY create_ns DESC").fetchall()
            named = conn.execute("SELECT name, version FROM model_entries").fetchall()
        assert [row[0] for row in stored] == [job.id for job in listed]
        assert named == [("pg-forest", 1)]
