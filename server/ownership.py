"""Whose it is: what callers see of, and may do to, what other callers made.

One rule for jobs, models, model names and datasets (``docs/security.md`` states it for users):

* What a caller makes records the name of its token, its ``owner``: a job; the model a training
  job makes (the job's owner); a model name (the token whose training claimed it first); an
  uploaded dataset.
* Every token with the read role sees every record's card: what it is, who owns it, its state and
  times, and what it takes to use it (a model's features, target, task and classes, its name,
  version, aliases, description and tags; a dataset's schema, as any trainer may train on it).
  What it was made from and what it gave stays with its owner, ``admin`` and ``+all`` tokens: a
  job's request and result, and the same facts on the model it made (its dataset, estimator,
  parameters, metrics, importances, row counts, its inputs' reference distribution, artifact
  digest and size). A non-owner sees the same of a job, of the model it made, and in listings of
  either. (Input drift, ``GetModelDrift``, is one index per feature, as ``/metrics`` shows it:
  open to the read role.)
* Serving a model (Predict, ModelInfer, ModelMetadata) is open to every token with the role, as on
  a model server.
* Changing what exists takes its owner or ``admin``: cancelling a job; exporting, updating or
  deleting a model; adding a version to a name (training with it); replacing or deleting a
  dataset. Aliases, which move what every caller of a name gets, need ``admin`` (server/roles.py).
* A record without an owner (made on a gateway without tokens, or before owners were recorded)
  is nobody's: only ``admin`` (and ``+all`` for seeing) gets past its card.

Without a tokens file everyone sees all and may do all.
"""

from __future__ import annotations

from google.protobuf.message import Message

from mlgate.errors import PermissionDenied
from mlgate.tokens import Role
from mlgate.v1 import jobs_pb2, models_pb2
from server.auth import current_caller

__all__ = [
    "MODEL_CARD",
    "check_may_cancel",
    "check_owner",
    "owner_name",
    "sees_details",
    "sees_inputs",
    "visible_event",
    "visible_job",
    "visible_model",
]

#: What everyone with the read role sees of a model: what it is and what it takes to call it.
#: A field not listed (a new one included) is the owner's.
MODEL_CARD = frozenset(
    {
        "id",
        "job_id",
        "owner",
        "create_time",
        "name",
        "version",
        "aliases",
        "description",
        "tags",
        "features",
        "target",
        "task",
        "classes",
    }
)


def owner_name() -> str:
    """The name a new record takes as its owner: the caller's, or "" on an open gateway."""
    caller = current_caller()
    return caller.name if caller is not None else ""


def sees_details(owner: str) -> bool:
    """Whether the caller sees more than the card of something ``owner`` made."""
    caller = current_caller()
    return caller is None or caller.sees_all_jobs or (bool(owner) and owner == caller.name)


def sees_inputs(job: jobs_pb2.Job) -> bool:
    """Whether the caller may see the job's request and result."""
    return sees_details(job.owner)


def check_owner(owner: str, action: str, subject: str) -> None:
    """``PermissionDenied`` unless the caller owns what it is ``action`` (a gerund phrase) or is
    admin; ``subject`` names it for the message."""
    caller = current_caller()
    if caller is None or caller.may(Role.ADMIN) or (owner and owner == caller.name):
        return
    whose = f"belongs to {owner!r}" if owner else "has no owner (made before owners were recorded)"
    raise PermissionDenied(
        f"{action} {subject} is for its owner or the admin role: it {whose}; token "
        f"{caller.name!r} has {caller.role}"
    )


def _card(message: Message, shown_fields: frozenset[str]) -> None:
    for field in message.DESCRIPTOR.fields:
        if field.name not in shown_fields:
            message.ClearField(field.name)


def visible_model(model: models_pb2.Model) -> models_pb2.Model:
    """``model`` as the caller may see it: whole, or its card (``MODEL_CARD``)."""
    if sees_details(model.owner):
        return model
    shown = models_pb2.Model()
    shown.CopyFrom(model)
    _card(shown, MODEL_CARD)
    return shown


def visible_event(event: jobs_pb2.JobEvent, full: bool) -> jobs_pb2.JobEvent:
    """``event`` as the caller may see it: without its result unless ``full``."""
    if full or event.WhichOneof("result") is None:
        return event
    shown = jobs_pb2.JobEvent()
    shown.CopyFrom(event)
    shown.ClearField("result")
    return shown


def visible_job(job: jobs_pb2.Job) -> jobs_pb2.Job:
    """``job`` as the caller may see it: whole, or without its request and result."""
    if sees_inputs(job):
        return job
    shown = jobs_pb2.Job()
    shown.CopyFrom(job)
    shown.ClearField("spec")
    shown.last_event.ClearField("result")
    return shown


def check_may_cancel(job: jobs_pb2.Job) -> None:
    """``PermissionDenied`` for a caller cancelling a job it does not own, unless admin."""
    check_owner(job.owner, "cancelling", f"job {job.id}")
