"""Jobs on the embedded system: watched and resumed, cancelled, listed, and carried across a
restart of the process."""

from __future__ import annotations

import grpc
import pytest

from mlgate.v1 import jobs_pb2, models_pb2
from tests.support.gateway_calls import (
    README_ROW,
    assert_well_formed,
    diabetes_request,
    events_of,
    first_event,
    hang_up,
    jobs,
    models,
    rows,
    rpc_code,
    train,
    trained_model,
)
from tests.support.system import gateway_settings, running_gateway


def test_watch_resumes_after_a_sequence_number_without_gaps_or_duplicates(channel) -> None:
    stub = jobs(channel)
    stream = stub.Train(diabetes_request())
    first = first_event(stream)
    assert first.state == jobs_pb2.JOB_STATE_QUEUED
    hang_up(stream)  # the client lost its stream; the job goes on

    watched = [r.event for r in stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=first.job_id))]
    assert_well_formed(watched)
    assert watched[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED

    resumed = [
        r.event
        for r in stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=first.job_id, after_seq=first.seq))
    ]
    assert resumed == watched[1:]
    middle = watched[2].seq
    assert [
        r.event
        for r in stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=first.job_id, after_seq=middle))
    ] == [e for e in watched if e.seq > middle]

    job = stub.GetJob(jobs_pb2.GetJobRequest(job_id=first.job_id)).job
    assert job.state == jobs_pb2.JOB_STATE_SUCCEEDED
    assert job.last_event == watched[-1]
    assert job.train.dataset_id == "diabetes"


def test_a_long_fit_shows_that_it_is_fitting(channel) -> None:
    # Fits for a second or more: far longer than the quarter second between progress events.
    events = train(channel, diabetes_request(params={"n_estimators": 1000, "max_depth": 12}))
    assert_well_formed(events)
    stages = [e.stage for e in events if e.state == jobs_pb2.JOB_STATE_RUNNING]
    assert stages[:2] == [jobs_pb2.STAGE_LOADING_DATA, jobs_pb2.STAGE_FITTING]
    assert events[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED


def test_cancel_a_queued_job(embedded, channel) -> None:
    stub = jobs(channel)
    # Hold the only training slot with a slow job, so the next one waits in the queue.
    slow = stub.Train(diabetes_request(params={"n_estimators": 400, "max_depth": 12}))
    slow_first = first_event(slow)
    waiting = stub.Train(diabetes_request())
    queued = first_event(waiting)
    cancelled = stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=queued.job_id)).job
    assert cancelled.state == jobs_pb2.JOB_STATE_CANCELLED
    rest = [r.event for r in waiting]
    assert rest[-1].state == jobs_pb2.JOB_STATE_CANCELLED
    assert_well_formed([queued, *rest])
    # Cancelling again changes nothing; the slow job is unaffected and succeeds.
    again = stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=queued.job_id)).job
    assert again.last_event == cancelled.last_event
    assert [r.event for r in slow][-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
    listed = models(channel).ListModels(models_pb2.ListModelsRequest()).models
    assert [m.job_id for m in listed] == [slow_first.job_id]


def test_list_jobs_pages_and_filters(channel) -> None:
    stub = jobs(channel)
    model_id = trained_model(channel)
    for _ in range(4):
        events_of(stub.Predict(jobs_pb2.PredictRequest(model_id=model_id, rows=rows(README_ROW))))
    seen, token, pages = [], "", 0
    while True:
        page = stub.ListJobs(jobs_pb2.ListJobsRequest(page_size=2, page_token=token))
        seen += list(page.jobs)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3 and len(seen) == 5
    assert [j.create_time.ToNanoseconds() for j in seen] == sorted(
        (j.create_time.ToNanoseconds() for j in seen), reverse=True
    )
    assert seen[-1].kind == jobs_pb2.JOB_KIND_TRAIN
    predicts = stub.ListJobs(jobs_pb2.ListJobsRequest(kind=jobs_pb2.JOB_KIND_PREDICT)).jobs
    assert len(predicts) == 4
    assert all(j.state == jobs_pb2.JOB_STATE_SUCCEEDED for j in predicts)
    with pytest.raises(grpc.RpcError) as excinfo:
        stub.ListJobs(jobs_pb2.ListJobsRequest(page_token="garbage"))
    assert rpc_code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT


def test_jobs_survive_a_gateway_restart(tmp_path) -> None:
    settings = gateway_settings(tmp_path / "data")
    first = running_gateway(settings)
    with grpc.insecure_channel(first.address) as ch:
        events = train(ch, diabetes_request())
    first.stop()
    second = running_gateway(settings)
    try:
        with grpc.insecure_channel(second.address) as ch:
            stub = jobs(ch)
            job = stub.GetJob(jobs_pb2.GetJobRequest(job_id=events[0].job_id)).job
            assert job.state == jobs_pb2.JOB_STATE_SUCCEEDED
            watched = [r.event for r in stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job.id))]
            assert watched == events
            model_id = events[-1].train_result.model_id
            predicted = events_of(
                stub.Predict(jobs_pb2.PredictRequest(model_id=model_id, rows=rows(README_ROW)))
            )
            assert predicted[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
    finally:
        second.stop()


def test_an_embedded_restart_finishes_the_jobs_it_had_accepted(tmp_path) -> None:
    settings = gateway_settings(tmp_path / "data")
    # A gateway whose workers never ran: the job is accepted, then the process goes away.
    first = running_gateway(settings, embedded_workers=False)
    with grpc.insecure_channel(first.address) as ch:
        stream = jobs(ch).Train(diabetes_request())
        queued = first_event(stream)
        hang_up(stream)
    first.stop()
    second = running_gateway(settings)
    try:
        with grpc.insecure_channel(second.address) as ch:
            watched = [
                r.event for r in jobs(ch).WatchJob(jobs_pb2.WatchJobRequest(job_id=queued.job_id))
            ]
        assert_well_formed(watched)
        assert watched[-1].state == jobs_pb2.JOB_STATE_SUCCEEDED
    finally:
        second.stop()
