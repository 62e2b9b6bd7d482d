"""Identifier formats. Ids reach storage keys and SQL, so nothing unvalidated passes here."""

from __future__ import annotations

import re
import uuid

from mlgate.errors import InvalidField

__all__ = [
    "BUILTIN_DATASETS",
    "check_dataset_id",
    "check_job_id",
    "check_model_id",
    "model_id_for_job",
    "new_job_id",
]

_JOB_ID = re.compile(r"job_[0-9a-f]{32}")
_MODEL_ID = re.compile(r"mdl_[0-9a-f]{32}")
_DATASET_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")

BUILTIN_DATASETS = ("diabetes", "iris", "wine", "breast_cancer")


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex}"


def model_id_for_job(job_id: str) -> str:
    """A training job's model id is derived from the job id, so a redelivered job
    overwrites its own model instead of leaving a second one."""
    return "mdl_" + check_job_id(job_id)[4:]


def _check(pattern: re.Pattern[str], value: str, field: str, shape: str) -> str:
    if not value:
        raise InvalidField(field, "is required")
    if not pattern.fullmatch(value):
        raise InvalidField(field, f"{value[:80]!r} is not a valid id ({shape})")
    return value


def check_job_id(value: str, field: str = "job_id") -> str:
    return _check(_JOB_ID, value, field, "job_ followed by 32 hex digits")


def check_model_id(value: str, field: str = "model_id") -> str:
    return _check(_MODEL_ID, value, field, "mdl_ followed by 32 hex digits")


def check_dataset_id(value: str, field: str = "dataset_id") -> str:
    return _check(_DATASET_ID, value, field, "lowercase letters, digits, '-' and '_', at most 64")
