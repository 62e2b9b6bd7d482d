"""The gateway's footprint: `mlgate gateway` over Redis, after serving real jobs and a REST
inference, holds no numerical library and stays small (the README records the figure)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mlgate.v1 import datasets_pb2, jobs_pb2
from tests.support.cluster import Cluster
from tests.support.fresh import free_port
from tests.support.gateway_calls import (
    README_ROW,
    datasets,
    diabetes_request,
    events_of,
    jobs,
    rows,
    train,
)
from tests.support.redis import SHARED_URL, delete_namespace, require_redis
from tests.support.rest_client import RestClient, readme_infer

LIMIT_MB = 120
HEAVY = ("sklearn", "scipy", "pandas", "numpy")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    require_redis()
    running = Cluster(tmp_path, "redis")
    yield running
    running.stop()
    delete_namespace(SHARED_URL, running.namespace)


def test_a_gateway_that_served_jobs_loads_no_ml_library_and_stays_small(cluster: Cluster) -> None:
    http_port = free_port()  # the inference protocol's REST binding too
    address = cluster.start_gateway(MLGATE_HTTP_PORT=str(http_port))
    cluster.start_worker()
    with grpc.insecure_channel(address) as channel:
        csv = b"size,colour,price\n" + b"".join(b"%d,red,%d.5\n" % (i, 2 * i) for i in range(20))
        datasets(channel).UploadDataset(
            iter([datasets_pb2.UploadDatasetRequest(dataset_id="houses", chunk=csv)])
        )
        done = train(channel, diabetes_request())[-1]
        assert done.state == jobs_pb2.JOB_STATE_SUCCEEDED, done
        request = jobs_pb2.PredictRequest(
            model_id=done.train_result.model_id, rows=rows(README_ROW)
        )
        predicted = events_of(jobs(channel).Predict(request))[-1]
        assert predicted.state == jobs_pb2.JOB_STATE_SUCCEEDED, predicted
    model_id = done.train_result.model_id
    with RestClient(http_port) as rest:
        answer = rest.post(f"/v2/models/{model_id}/infer", readme_infer())
        assert answer.status == 200 and answer.body["outputs"][0]["data"] == [208.6445780005619]

    gateway = cluster.gateways[0][0]
    # Every imported C extension is mapped into the process, so the maps show what was loaded.
    maps = Path(f"/proc/{gateway.pid}/maps").read_text()
    assert [lib for lib in HEAVY if f"/site-packages/{lib}/" in maps] == []
    status = Path(f"/proc/{gateway.pid}/status").read_text()
    rss_kb = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    assert rss_kb / 1024 < LIMIT_MB, f"gateway RSS {rss_kb / 1024:.0f} MB"
