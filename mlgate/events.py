"""Job events and their sequence numbers, shared by the gateway and the workers.

QUEUED is seq 1. Each delivery of a job (an attempt) numbers its events in a block of its own,
above every earlier attempt's: attempt ``a`` counts up from ``a * ATTEMPT_SEQ_BLOCK`` and ends with
the block's last number. So a redelivered job's events are recorded and streamed (the new attempt
and its progress show), while a copy of one attempt's event (recorded by two paths, published
twice) has the seq of the first and is dropped as a duplicate; a late event of an earlier attempt
is below the new attempt's and is dropped too.

An attempt that ends without an outcome (its worker stopped answering, its fit process died) is
told by an AWAITING_RETRY event, numbered just below the attempt's outcome: above its progress,
so it shows, and below any outcome the attempt still sends, and every later attempt's events.
Whoever sees the attempt end sends it (the gateways, which hear the workers' heartbeats, or the
worker whose fit process died); its copies share its seq, so one is recorded.
"""

from __future__ import annotations

import time

from google.protobuf.timestamp_pb2 import Timestamp

from mlgate.v1 import jobs_pb2
from mlgate_client.results import TERMINAL_STATES

__all__ = [
    "ATTEMPT_SEQ_BLOCK",
    "QUEUED_SEQ",
    "TERMINAL_STATES",
    "attempt_line",
    "attempt_seq",
    "event",
    "is_terminal",
    "queued_job",
    "retry_note",
    "retry_note_seq",
    "stopped_answering",
    "terminal_seq",
]

QUEUED_SEQ = 1
# Events one attempt may number; its progress events stop short of the block's end.
ATTEMPT_SEQ_BLOCK = 1_000_000


def is_terminal(state: int) -> bool:
    return state in TERMINAL_STATES


def attempt_seq(attempt: int, step: int) -> int:
    """The seq of an attempt's ``step``-th event (from 1)."""
    return attempt * ATTEMPT_SEQ_BLOCK + step


def terminal_seq(attempt: int) -> int:
    """The seq of an attempt's outcome: above all of that attempt's other events."""
    return (attempt + 1) * ATTEMPT_SEQ_BLOCK - 1


def retry_note_seq(attempt: int) -> int:
    """The seq of the AWAITING_RETRY event of an attempt that ended without an outcome."""
    return terminal_seq(attempt) - 1


def stopped_answering(attempt: int) -> str:
    """Why ``attempt`` ended without an outcome, as the broker sees it when it delivers the job
    again: its worker died or lost the broker."""
    return f"the worker running attempt {attempt} stopped answering"


def attempt_line(attempt: int, max_attempts: int, reason: str) -> str:
    """What a later attempt says first: "attempt 2 of 3 (the worker running attempt 1 ...)"."""
    return f"attempt {attempt} of {max_attempts} ({reason})"


def retry_note(
    job_id: str, attempt: int, max_attempts: int, reason: str, **fields: object
) -> jobs_pb2.JobEvent:
    """The AWAITING_RETRY event of ``attempt``, which ended without an outcome for ``reason``."""
    if attempt < max_attempts:
        then = f"the broker delivers the job again, as attempt {attempt + 1} of {max_attempts}"
    else:
        then = f"that was the last of {max_attempts} attempts: the job fails when delivered again"
    return event(
        job_id,
        retry_note_seq(attempt),
        jobs_pb2.JOB_STATE_RUNNING,
        stage=jobs_pb2.STAGE_AWAITING_RETRY,
        attempt=attempt,
        max_attempts=max_attempts,
        retry_reason=reason,
        message=f"{reason}; {then}",
        **fields,
    )


def event(job_id: str, seq: int, state: int, **fields: object) -> jobs_pb2.JobEvent:
    """A JobEvent stamped with the current time."""
    now = Timestamp()
    now.GetCurrentTime()
    return jobs_pb2.JobEvent(job_id=job_id, seq=seq, state=state, time=now, **fields)  # type: ignore[arg-type]


def queued_job(
    job_id: str, kind: jobs_pb2.JobKind.ValueType, owner: str, parent_job_id: str = ""
) -> jobs_pb2.Job:
    """A new job's record, QUEUED now, its last event the QUEUED one (its spec left to set)."""
    now = Timestamp()
    now.FromNanoseconds(time.time_ns())
    queued = event(job_id, QUEUED_SEQ, jobs_pb2.JOB_STATE_QUEUED)
    queued.time.CopyFrom(now)
    return jobs_pb2.Job(
        id=job_id,
        kind=kind,
        state=jobs_pb2.JOB_STATE_QUEUED,
        create_time=now,
        update_time=now,
        last_event=queued,
        owner=owner,
        parent_job_id=parent_job_id,
    )
