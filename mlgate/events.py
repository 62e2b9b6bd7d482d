"""Job events and their sequence numbers, shared by the gateway and the workers.

A job's seq values are fixed by its pipeline, not counted at run time: QUEUED is 1, each stage has
its own number and the terminal event comes last. A redelivered job therefore re-emits the same
seq for the same step, and the job store drops it as a duplicate.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from mlgate.v1 import jobs_pb2

__all__ = [
    "PREDICT_SEQ",
    "QUEUED_SEQ",
    "TERMINAL_STATES",
    "TRAIN_SEQ",
    "event",
    "is_terminal",
    "terminal_seq",
]

# A job in one of these states has ended: nothing moves it out, and no event follows.
TERMINAL_STATES = frozenset(
    {jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED}
)
QUEUED_SEQ = 1
TRAIN_SEQ: dict[int, int] = {
    jobs_pb2.STAGE_LOADING_DATA: 2,
    jobs_pb2.STAGE_FITTING: 3,
    jobs_pb2.STAGE_EVALUATING: 4,
    jobs_pb2.STAGE_SAVING: 5,
}
PREDICT_SEQ: dict[int, int] = {
    jobs_pb2.STAGE_LOADING_MODEL: 2,
    jobs_pb2.STAGE_PREDICTING: 3,
}


def is_terminal(state: int) -> bool:
    return state in TERMINAL_STATES


def terminal_seq(kind: int) -> int:
    stages = TRAIN_SEQ if kind == jobs_pb2.JOB_KIND_TRAIN else PREDICT_SEQ
    return max(stages.values()) + 1


def event(job_id: str, seq: int, state: int, **fields: object) -> jobs_pb2.JobEvent:
    """A JobEvent stamped with the current time."""
    now = Timestamp()
    now.GetCurrentTime()
    return jobs_pb2.JobEvent(job_id=job_id, seq=seq, state=state, time=now, **fields)  # type: ignore[arg-type]
