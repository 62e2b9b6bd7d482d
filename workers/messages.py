"""What a worker and its fit processes (``workers.fitpool``, ``workers.fitting``) send each other.

Every message is a frozen dataclass, pickled over the pipe: a field is read by its name, so adding
one cannot shift another's meaning, and mypy checks both ends.

    worker → child   FitTask       one fit to run
                     TrialTask     one search candidate to cross-validate (workers.trials)
    child → worker   FitProgress   while it works, at most a few per second
                     Fitted        the model, ready to save
                     TrialScored   a candidate's fold scores, or why it cannot be fitted
                     FitFailed     a job that cannot succeed: its public status
                     StoreAway     the object store could not be read: worth another attempt
"""

from __future__ import annotations

from dataclasses import dataclass

from mlgate.jobs import Plan
from storage.models import Encoded

__all__ = [
    "FitAnswer",
    "FitFailed",
    "FitProgress",
    "FitTask",
    "Fitted",
    "StoreAway",
    "TrialScored",
    "TrialTask",
]


@dataclass(frozen=True, slots=True)
class FitTask:
    """One fit, as the worker hands it to a child: small, so sending it costs nothing."""

    job_id: str
    model_id: str
    plan: Plan
    # The dataset's digest as described when the job was planned: the cache key.
    dataset_sha256: str
    cores: int
    # Bytes the fit may allocate on top of what the child holds before it starts; 0: no limit.
    memory_limit: int


@dataclass(frozen=True, slots=True)
class TrialTask:
    """One candidate of a search, scored by k-fold cross-validation on Train's training part."""

    job_id: str
    plan: Plan
    dataset_sha256: str
    cores: int
    memory_limit: int
    cv_folds: int
    # A scikit-learn scorer name; "" for the task's default (r2, accuracy).
    scoring: str
    # Halving: "n_samples" subsamples each fold as HalvingGridSearchCV does; "" otherwise.
    resource: str
    resources: int


@dataclass(frozen=True, slots=True)
class TrialScored:
    """A trial's outcome: each fold's score, or the error the candidate could not be fitted for."""

    fold_scores: tuple[float, ...]
    fit_seconds: float
    error: str
    scoring: str


@dataclass(frozen=True, slots=True)
class FitProgress:
    """How far the fit has got: a ``jobs_pb2`` stage and the job's fraction done."""

    stage: int
    fraction: float


@dataclass(frozen=True, slots=True)
class Fitted:
    """A fit's outcome, ready to save: the model's record (serialized) and its artifact."""

    record: bytes
    encoded: Encoded
    fit_seconds: float
    # When the child loaded the dataset (time_ns at start and end), for the job's trace.
    loaded: tuple[int, int]


@dataclass(frozen=True, slots=True)
class FitFailed:
    """The fit cannot succeed: the status code name and message its job ends FAILED with."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class StoreAway:
    """The object store could not be read; ``message`` is the store's own error, for the log."""

    message: str


#: What a child answers a ``FitTask`` with, once.
FitAnswer = Fitted | TrialScored | FitFailed | StoreAway
