"""Submission is all or nothing, whatever the caller does: an accepted job is queued or ends FAILED."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc

from mlgate.events import TERMINAL_STATES
from mlgate.v1 import jobs_pb2, jobs_pb2_grpc
from tests.support.gateway_calls import README_ROW, jobs, rows, trained_model
from tests.support.waiting import wait_for


def _all_jobs(stub: jobs_pb2_grpc.JobServiceStub) -> list[jobs_pb2.Job]:
    found: list[jobs_pb2.Job] = []
    token = ""
    while True:
        page = stub.ListJobs(jobs_pb2.ListJobsRequest(page_size=1000, page_token=token))
        found += page.jobs
        token = page.next_page_token
        if not token:
            return found


def test_predictions_whose_callers_give_up_leave_no_job_queued_for_ever(channel) -> None:
    stub = jobs(channel)
    model_id = trained_model(channel)
    request = jobs_pb2.PredictRequest(model_id=model_id, rows=rows(README_ROW))

    def give_up(i: int) -> grpc.StatusCode:
        # Deadlines of 2 to 60 ms land anywhere in the submission, as a careless client's would.
        try:
            for _ in stub.Predict(request, timeout=0.002 + (i % 30) * 0.002):
                pass
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    with ThreadPoolExecutor(60) as pool:
        codes = set(pool.map(give_up, range(1200)))
    assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.DEADLINE_EXCEEDED}, codes

    recorded = [j for j in _all_jobs(stub) if j.kind == jobs_pb2.JOB_KIND_PREDICT]
    assert recorded, "no prediction got as far as being recorded: the deadlines are too short"

    def all_ended() -> bool:
        return all(j.state in TERMINAL_STATES for j in _all_jobs(stub))

    wait_for(all_ended, 30, "every recorded job ending (none left QUEUED)")
    for job in _all_jobs(stub):
        events = list(stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job.id), timeout=10))
        assert events[-1].event.state in TERMINAL_STATES
