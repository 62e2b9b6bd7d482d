"""A job whose worker waits out an S3 outage says so: running, attempt 1, in a waiting stage, "waiting
for the object store (s3) for 12 s", in its record, `mlgate jobs get` and the CLI's progress,
not `queued`, attempt 0, for as long as the outage lasts."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlgate.v1 import jobs_pb2
from mlgate_client import MLGateClient
from tests.support.cluster import MLGATE, Cluster, delete_cluster_namespace
from tests.support.s3 import SeaweedFS, private_seaweedfs
from tests.support.waiting import wait_for

WAITING = re.compile(r"waiting for the object store \(s3\) for (\d+) s")


@pytest.fixture
def seaweedfs(tmp_path: Path) -> Iterator[SeaweedFS]:
    """A SeaweedFS of this test's own, since the test stops it."""
    with private_seaweedfs(tmp_path / "s3") as weed:
        yield weed


@pytest.fixture
def cluster(tmp_path: Path, seaweedfs: SeaweedFS) -> Iterator[Cluster]:
    from tests.support.rabbitmq import require_rabbitmq

    require_rabbitmq()
    storage = {"MLGATE_STORAGE_URL": f"s3://{seaweedfs.server.bucket}/waits"}
    running = Cluster(tmp_path, "rabbitmq", {**seaweedfs.server.env(), **storage})
    yield running
    running.stop()
    delete_cluster_namespace("rabbitmq", running.namespace)


def _the_job(client: MLGateClient) -> str:
    job = next(iter(client.list_jobs()), None)
    return "" if job is None else job.id


@pytest.mark.slow
def test_a_job_waiting_for_s3_says_so_not_queued(cluster: Cluster, seaweedfs: SeaweedFS) -> None:
    address = cluster.start_gateway()
    cluster.start_worker()
    seaweedfs.stop()
    train = cluster.mlgate(address, "train", "diabetes", "--target", "target")
    try:
        with MLGateClient(address, timeout=30) as client:
            wait_for(lambda: bool(_the_job(client)), 30, "the job submitted")
            job_id = _the_job(client)
            wait_for(
                lambda: WAITING.fullmatch(client.get_job(job_id).message) is not None,
                30,
                "the job saying how long it has waited",
            )
            job = client.get_job(job_id)
            assert (job.state, job.stage, job.attempt) == ("running", "waiting_for_store", 1)
            shown = subprocess.run(
                [MLGATE, "--address", address, "jobs", "get", job_id],
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
            assert re.search(r"^state: +running$", shown, re.M), shown
            assert re.search(r"^stage: +waiting_for_store$", shown, re.M), shown
            assert re.search(rf"^message: +{WAITING.pattern}$", shown, re.M), shown
        seaweedfs.start()
        _, err = train.communicate(timeout=300)
    finally:
        if train.poll() is None:
            train.kill()
    assert train.returncode == 0, err
    said = [line for line in err.splitlines() if line.startswith("mlgate: waiting for")]
    assert said and all(
        WAITING.fullmatch(line.removeprefix("mlgate: ")) or line.endswith("(s3)") for line in said
    ), err
    with MLGateClient(address, timeout=30) as client:
        events = list(client.watch(job_id))
    # The wait counted no attempt: the job succeeded on its first.
    assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
    assert {e.attempt for e in events[1:]} == {1}
    assert any(e.stage == jobs_pb2.STAGE_WAITING_FOR_STORE for e in events)
