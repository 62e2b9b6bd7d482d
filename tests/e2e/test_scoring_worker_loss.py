"""Batch scoring on each real broker with a worker SIGKILLed midway: the dead worker's shards
are delivered again and rerun (their parts rewritten), the others' parts are kept, and the
output of 200,000 rows equals scikit-learn's predictions row for row."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlgate.v1 import jobs_pb2
from mlgate_client import MLGateClient
from tests.support.cluster import Cluster, delete_cluster_namespace
from tests.support.samples import DIABETES_FEATURES
from tests.support.scoring import diabetes_rows, read_dataset, sklearn_model

ROWS = 200_000
SHARD_ROWS = 4_000
# A dead worker is counted out within 2 s, and Redis hands its pending shards on soon after.
FAST = {
    "MLGATE_HEARTBEAT_SECONDS": "2",
    "MLGATE_MAX_ATTEMPTS": "3",
    "MLGATE_REDIS_HEARTBEAT_TTL": "4",
    "MLGATE_REDIS_RECLAIM_INTERVAL": "1",
}


@pytest.fixture(params=["rabbitmq", "redis"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path, request.param, FAST)
    yield running
    running.stop()
    delete_cluster_namespace(request.param, running.namespace)


@pytest.mark.slow
def test_a_worker_killed_mid_scoring_costs_its_shards_a_retry_not_the_output(
    cluster: Cluster, tmp_path: Path
) -> None:
    address = cluster.start_gateway()
    victim, _ = cluster.start_workers(2)
    frame = diabetes_rows(ROWS)
    source = tmp_path / "rows.csv"
    frame.to_csv(source, index=False)
    with MLGateClient(address, timeout=120) as client:
        client.upload_dataset("rows", source)
        trained = client.train("diabetes", "target", features=DIABETES_FEATURES, model_name="dia")
        job_id = client.submit_score(
            "dia", "rows", "rows-scored", keep_columns=["id"], shard_rows=SHARD_ROWS
        )
        killed_at = -1
        final = None
        for event in client.watch(job_id):
            done = event.score_progress.rows_done
            if killed_at < 0 and ROWS // 10 <= done < ROWS // 2:
                cluster.kill(victim)  # with shards in hand: prefetched and running
                killed_at = done
            final = event
        assert final is not None and final.state == jobs_pb2.JOB_STATE_SUCCEEDED, final
        assert killed_at >= 0, "the job ended before a worker could be killed midway"
        assert final.score_result.rows == ROWS

        shards = client._jobs.ListJobs(
            jobs_pb2.ListJobsRequest(parent_job_id=job_id, page_size=1000)
        ).jobs
        assert len(shards) == ROWS // SHARD_ROWS + 1  # and the commit
        assert all(s.state == jobs_pb2.JOB_STATE_SUCCEEDED for s in shards)
        retried = [s for s in shards if s.attempt > 1]
        print(
            f"\n{cluster.env['MLGATE_BROKER']}: killed at {killed_at} rows; "
            f"{len(retried)} shards retried"
        )
        assert retried, "no shard was delivered again after its worker died"
        # A shard that had succeeded on the dead worker was not run again.
        assert len(retried) < len(shards) - 1

        model, features = sklearn_model(tmp_path / "data", trained.model_id)
        output = read_dataset(client, "rows-scored", tmp_path)
    assert list(output.columns) == ["id", "prediction"]
    assert output["id"].tolist() == list(range(ROWS))
    np.testing.assert_array_equal(output["prediction"], model.predict(frame[features]))
