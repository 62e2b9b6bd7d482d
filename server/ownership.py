"""Whose job it is: what callers see of, and may do to, other callers' jobs.

On a gateway with tokens a job records the name of the token that submitted it (``owner``).
Another caller sees the job without its request (the training spec, the rows to predict) and
without its result (the model and metrics, the predictions), unless its token is ``admin`` or
``+all``; cancelling another caller's job needs ``admin``. Without tokens everyone sees all.
"""

from __future__ import annotations

from mlgate.tokens import Role
from mlgate.v1 import jobs_pb2
from server.auth import current_caller, require

__all__ = ["check_may_cancel", "owner_name", "sees_inputs", "visible_event", "visible_job"]


def owner_name() -> str:
    """The name a new job records as its owner: the caller's, or "" on an open gateway."""
    caller = current_caller()
    return caller.name if caller is not None else ""


def sees_inputs(job: jobs_pb2.Job) -> bool:
    """Whether the caller may see the job's request and result."""
    caller = current_caller()
    return caller is None or caller.sees_all_jobs or (bool(job.owner) and job.owner == caller.name)


def visible_event(event: jobs_pb2.JobEvent, full: bool) -> jobs_pb2.JobEvent:
    """``event`` as the caller may see it: without its result unless ``full``."""
    if full or event.WhichOneof("result") is None:
        return event
    shown = jobs_pb2.JobEvent()
    shown.CopyFrom(event)
    shown.ClearField("result")
    return shown


def visible_job(job: jobs_pb2.Job) -> jobs_pb2.Job:
    """``job`` as the caller may see it."""
    if sees_inputs(job):
        return job
    shown = jobs_pb2.Job()
    shown.CopyFrom(job)
    shown.ClearField("spec")
    shown.last_event.ClearField("result")
    return shown


def check_may_cancel(job: jobs_pb2.Job) -> None:
    """``PermissionDenied`` for a caller cancelling a job it does not own, unless admin."""
    caller = current_caller()
    if caller is not None and job.owner != caller.name:
        require(Role.ADMIN, "cancelling another caller's job")
