"""Listing a search's or scoring job's children through the gateway (issue 20): ListJobs with
parent_job_id, the client's ``list_jobs(parent=...)`` and ``mlgate jobs list --parent``; without a
parent, trials and shards stay out of a listing unless its kind names them."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from mlgate.ids import new_job_id
from mlgate.v1 import jobs_pb2, jobs_pb2_grpc
from mlgate_client import MLGateClient, errors
from tests.support.background import BackgroundGateway
from tests.support.cli_runner import Run
from tests.support.samples import DIABETES_FEATURES


def _recorded(
    embedded: BackgroundGateway,
    kind: jobs_pb2.JobKind.ValueType,
    state: jobs_pb2.JobState.ValueType,
    parent_job_id: str = "",
) -> jobs_pb2.Job:
    """A job put straight into the gateway's store, as the fan-out records children, but marked
    published and (for a parent) ended, so that no worker or coordinator acts on it."""
    job_id = new_job_id()
    now = Timestamp()
    now.GetCurrentTime()
    job = jobs_pb2.Job(id=job_id, kind=kind, state=state, parent_job_id=parent_job_id)
    job.create_time.CopyFrom(now)
    job.update_time.CopyFrom(now)
    job.last_event.CopyFrom(jobs_pb2.JobEvent(job_id=job_id, seq=1, state=state, time=now))
    store = embedded.gateway.store
    assert store.create_if_absent(job)
    store.mark_published([job.id])
    return job


def test_children_are_listed_by_parent_and_hidden_otherwise(
    embedded: BackgroundGateway, client: MLGateClient, mlgate: Run
) -> None:
    trained = client.train("diabetes", "target", features=DIABETES_FEATURES)
    search = _recorded(embedded, jobs_pb2.JOB_KIND_SEARCH, jobs_pb2.JOB_STATE_CANCELLED)
    trials = [
        _recorded(embedded, jobs_pb2.JOB_KIND_TRIAL, jobs_pb2.JOB_STATE_QUEUED, search.id)
        for _ in range(3)
    ]
    newest_first = [trial.id for trial in reversed(trials)]

    assert [j.id for j in client.list_jobs()] == [search.id, trained.job_id]
    children = list(client.list_jobs(page_size=2, parent=search.id))
    assert [j.id for j in children] == newest_first
    assert {(j.kind, j.parent_job_id) for j in children} == {("trial", search.id)}
    assert [j.id for j in client.list_jobs(kind="trial")] == newest_first
    assert list(client.list_jobs(state="failed", parent=search.id)) == []
    assert list(client.list_jobs(parent=trained.job_id)) == [], "a job without children"

    status, out, err = mlgate("--json", "jobs", "list", "--parent", search.id)
    assert status == 0, err
    assert [job["id"] for job in json.loads(out)] == newest_first
    status, out, _ = mlgate("jobs", "get", trials[0].id)
    assert status == 0 and f"parent:   {search.id}" in out

    with pytest.raises(errors.InvalidArgument, match=r"parent_job_id: .*job_ followed by 32 hex"):
        list(client.list_jobs(parent="../etc"))
    status, _, err = mlgate("jobs", "list", "--parent", "not-a-job")
    assert status != 0 and "parent_job_id" in err


def test_list_jobs_names_parent_job_id_when_it_is_not_a_job_id(embedded_gateway: str) -> None:
    with grpc.insecure_channel(embedded_gateway) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListJobs(jobs_pb2.ListJobsRequest(parent_job_id="job_" + "x" * 32))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.details() or "").startswith("parent_job_id: ")
