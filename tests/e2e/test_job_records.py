"""Job records stay readable however large the requests were: ListJobs returns summaries, GetJob is
bounded, and what the gateway does not know is not stored."""

from __future__ import annotations

from typing import Any

import grpc

from mlgate.v1 import datasets_pb2, jobs_pb2
from tests.support.gateway_calls import (
    README_ROW,
    datasets,
    events_of,
    jobs,
    rows,
    train,
    trained_model,
)
from tests.support.samples import HOUSES_CSV

# What a client accepts unless told otherwise.
DEFAULT_CLIENT_LIMIT = 4 * 1024 * 1024


def _predict(channel: grpc.Channel, request: jobs_pb2.PredictRequest) -> jobs_pb2.JobEvent:
    return events_of(jobs(channel).Predict(request, timeout=120))[-1]


def test_listings_of_large_predictions_fit_a_default_client(channel: grpc.Channel) -> None:
    model_id = trained_model(channel)
    sent = rows(*({**README_ROW, "age": i / 100_000} for i in range(10_000)))
    request = jobs_pb2.PredictRequest(model_id=model_id, rows=sent)
    assert request.ByteSize() > DEFAULT_CLIENT_LIMIT / 3
    done = [_predict(channel, request) for _ in range(3)]
    assert all(e.state == jobs_pb2.JOB_STATE_SUCCEEDED for e in done)

    stub = jobs(channel)
    listed = stub.ListJobs(jobs_pb2.ListJobsRequest(kind=jobs_pb2.JOB_KIND_PREDICT)).jobs
    assert {j.id for j in listed} == {e.job_id for e in done}
    for job in listed:
        assert job.truncated and job.row_count == 10_000
        assert job.predict.model_id == model_id and not job.predict.rows
        assert job.last_event.predict_result.model_id == model_id
        assert not job.last_event.predict_result.predictions

    # GetJob has the whole request and the predictions.
    whole = stub.GetJob(jobs_pb2.GetJobRequest(job_id=done[0].job_id)).job
    assert not whole.truncated
    assert list(whole.predict.rows) == sent
    assert whole.last_event == done[0]


def test_get_job_bounds_a_request_too_large_for_a_default_client(channel: grpc.Channel) -> None:
    datasets(channel).UploadDataset(
        iter([datasets_pb2.UploadDatasetRequest(dataset_id="houses", chunk=HOUSES_CSV.encode())])
    )
    events = train(channel, jobs_pb2.TrainRequest(dataset_id="houses", target="price"))
    model_id = events[-1].train_result.model_id
    # Long unseen categories are valid values: 10,000 of them make a 7 MB request.
    sent = rows(*({"size": i, "colour": f"{i:06d}" + "x" * 700} for i in range(10_000)))
    request = jobs_pb2.PredictRequest(model_id=model_id, rows=sent)
    assert request.ByteSize() > DEFAULT_CLIENT_LIMIT
    job_id = _predict(channel, request).job_id

    job = jobs(channel).GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).job
    assert job.ByteSize() < DEFAULT_CLIENT_LIMIT
    assert job.truncated and job.row_count == 10_000
    kept = len(job.predict.rows)
    assert 1000 < kept < 10_000
    assert list(job.predict.rows) == sent[:kept]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _unknown_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_unknown_fields_in_a_request_are_not_stored(channel: grpc.Channel) -> None:
    model_id = trained_model(channel)
    row = rows(README_ROW)[0].SerializeToString() + _unknown_field(77, b"r" * 100_000)
    body = (
        jobs_pb2.PredictRequest(model_id=model_id).SerializeToString()
        + _unknown_field(2, row)  # field 2: rows, one Struct padded with a field it lacks
        + _unknown_field(999, b"p" * 1_000_000)
    )
    predict: Any = channel.unary_stream(
        "/mlgate.v1.JobService/Predict",
        request_serializer=None,
        response_deserializer=jobs_pb2.PredictResponse.FromString,
    )
    done = [response.event for response in predict(body, timeout=60)][-1]
    assert done.state == jobs_pb2.JOB_STATE_SUCCEEDED

    job = jobs(channel).GetJob(jobs_pb2.GetJobRequest(job_id=done.job_id)).job
    assert list(job.predict.rows) == rows(README_ROW)
    assert job.predict.ByteSize() < 1000, "the padding was stored"
