"""Job events and their sequence numbers, shared by the gateway and the workers.

QUEUED is seq 1. Each delivery of a job (an attempt) numbers its events in a block of its own,
above every earlier attempt's: attempt ``a`` counts up from ``a * ATTEMPT_SEQ_BLOCK`` and ends with
the block's last number. So a redelivered job's events are recorded and streamed (the new attempt
and its progress show), while a copy of one attempt's event (recorded by two paths, published
twice) has the seq of the first and is dropped as a duplicate; a late event of an earlier attempt
is below the new attempt's and is dropped too.
"""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from mlgate.v1 import jobs_pb2
from mlgate_client.results import TERMINAL_STATES

__all__ = [
    "ATTEMPT_SEQ_BLOCK",
    "QUEUED_SEQ",
    "TERMINAL_STATES",
    "attempt_seq",
    "event",
    "is_terminal",
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


def event(job_id: str, seq: int, state: int, **fields: object) -> jobs_pb2.JobEvent:
    """A JobEvent stamped with the current time."""
    now = Timestamp()
    now.GetCurrentTime()
    return jobs_pb2.JobEvent(job_id=job_id, seq=seq, state=state, time=now, **fields)  # type: ignore[arg-type]
