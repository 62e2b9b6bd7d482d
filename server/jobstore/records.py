"""What a job record holds where: stored, listed, and returned by GetJob.

A prediction's rows (or columns) can be megabytes, and they never change: the stores keep them
apart from the record, which every event rewrites, and add them back only on ``get``. Listings
are summaries without rows or predictions, so a page of jobs stays small whatever the jobs
carried.
"""

from __future__ import annotations

from mlgate.columns import row_count
from mlgate.v1 import jobs_pb2

__all__ = ["GET_JOB_MAX_BYTES", "bounded", "split_rows", "summary", "with_rows"]

#: GetJob's bound: under a default gRPC client's 4 MiB limit, with room for the envelope.
GET_JOB_MAX_BYTES = 3 * 1024 * 1024


def split_rows(job: jobs_pb2.Job) -> tuple[jobs_pb2.Job, bytes]:
    """The record to store (without rows; ``row_count`` set) and its rows, serialized apart."""
    record = jobs_pb2.Job()
    record.CopyFrom(job)
    if not job.HasField("predict"):
        return record, b""
    record.row_count = row_count(job.predict)
    del record.predict.rows[:]
    del record.predict.columns[:]
    apart = jobs_pb2.PredictRequest(rows=job.predict.rows, columns=job.predict.columns)
    return record, apart.SerializeToString()


def with_rows(record: jobs_pb2.Job, rows: bytes | None) -> jobs_pb2.Job:
    """The whole job from a stored record and the rows ``split_rows`` kept apart (in place).

    Records stored before rows were kept apart still hold their rows, and have none apart."""
    if rows:
        record.predict.MergeFromString(rows)
    return record


def summary(job: jobs_pb2.Job) -> jobs_pb2.Job:
    """The job without its prediction rows and predictions (in place), for listings."""
    if job.HasField("predict"):
        job.row_count = job.row_count or row_count(job.predict)
        del job.predict.rows[:]
        del job.predict.columns[:]
        job.truncated = job.row_count > 0
    result = job.last_event.predict_result
    if result.predictions or result.classes or result.probabilities:
        del result.predictions[:]
        del result.classes[:]
        del result.probabilities[:]
        job.truncated = True
    return job


def bounded(job: jobs_pb2.Job, limit: int = GET_JOB_MAX_BYTES) -> jobs_pb2.Job:
    """The job, leaving out as many trailing rows as it takes to serialize within ``limit``
    bytes (in place); a summary if even that is not enough."""
    size = job.ByteSize()
    if size <= limit:
        return job
    # Columns cannot lose trailing rows one at a time: a job too large with them is summarized.
    rows = job.predict.rows
    job.row_count = job.row_count or row_count(job.predict)
    keep = len(rows)
    while keep and size > limit:
        keep -= 1
        row = rows[keep].ByteSize()
        size -= row + 1 + _varint_size(row)  # the row, its tag and its length
    del rows[keep:]
    job.truncated = True
    return job if job.ByteSize() <= limit else summary(job)


def _varint_size(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)
