"""Plain, typed views of what the server returns, built from the protobuf messages.

Enums become short lowercase names (``"queued"``, ``"train"``, ``"fitting"``), timestamps become
aware datetimes, ``google.protobuf.Value`` becomes the Python value. Each view keeps the message it
came from in ``proto`` for anything the view leaves out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from mlgate.v1 import datasets_pb2, jobs_pb2, models_pb2
from mlgate_client.estimators import recorded_params

__all__ = [
    "TERMINAL_STATES",
    "Alias",
    "Column",
    "Dataset",
    "Job",
    "Model",
    "PredictResult",
    "TrainResult",
    "enum_name",
    "from_value",
    "kind_name",
    "stage_name",
    "state_name",
    "task_name",
    "timestamp",
]


# A job in one of these states has ended: nothing moves it out, and no event follows. The gateway
# and the workers hold to the same set (mlgate.events).
TERMINAL_STATES = frozenset(
    {jobs_pb2.JOB_STATE_SUCCEEDED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED}
)


def enum_name(full: str, prefix: str) -> str:
    """``JOB_STATE_QUEUED`` → ``queued``; the UNSPECIFIED value → ``""``."""
    short = full.removeprefix(prefix).lower()
    return "" if short == "unspecified" else short


def state_name(state: int) -> str:
    return enum_name(jobs_pb2.JobState.Name(state), "JOB_STATE_")  # type: ignore[arg-type]


def kind_name(kind: int) -> str:
    return enum_name(jobs_pb2.JobKind.Name(kind), "JOB_KIND_")  # type: ignore[arg-type]


def stage_name(stage: int) -> str:
    return enum_name(jobs_pb2.Stage.Name(stage), "STAGE_")  # type: ignore[arg-type]


def task_name(task: int) -> str:
    return enum_name(jobs_pb2.Task.Name(task), "TASK_")  # type: ignore[arg-type]


def timestamp(ts: Timestamp) -> datetime | None:
    """An aware UTC datetime, or None for an unset timestamp."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(tzinfo=UTC)


def from_value(value: struct_pb2.Value) -> Any:
    """The Python value of a ``google.protobuf.Value`` (numbers come back as float)."""
    return json_format.MessageToDict(value)


def _label(value: Any) -> Any:
    # Struct has only doubles; class labels that were integers (iris's 0, 1, 2) read better as ints.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass(frozen=True)
class Column:
    """A dataset column or a model input feature."""

    name: str
    dtype: str


@dataclass(frozen=True)
class TrainResult:
    """A finished training job: the model it produced and its holdout metrics."""

    job_id: str
    model_id: str
    metrics: Mapping[str, float]
    # The name and version the model was registered as; "" and 0 without a name.
    model_name: str = ""
    model_version: int = 0
    # What a person should know about the model: a feature like an identifier.
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_event(cls, event: jobs_pb2.JobEvent) -> TrainResult:
        result = event.train_result
        return cls(
            event.job_id,
            result.model_id,
            dict(result.metrics),
            result.model_name,
            result.model_version,
            tuple(result.warnings),
        )


@dataclass(frozen=True)
class PredictResult:
    """A finished prediction job: one prediction per row, and for classifiers the class labels and
    each row's probabilities in the order of ``classes`` (empty when the model has none)."""

    job_id: str
    model_id: str
    predictions: tuple[Any, ...]
    classes: tuple[Any, ...] = ()
    probabilities: tuple[tuple[float, ...], ...] = ()
    #: Sentences about the input, e.g. a category the model never saw and so ignored.
    warnings: tuple[str, ...] = ()
    #: The name and version that answered ("" and 0 for an unnamed model), and the alias the
    #: request went through ("" for none).
    model_name: str = ""
    model_version: int = 0
    alias: str = ""

    @classmethod
    def from_event(cls, event: jobs_pb2.JobEvent) -> PredictResult:
        result = event.predict_result
        classes = tuple(_label(from_value(v)) for v in result.classes)
        predictions = tuple(from_value(v) for v in result.predictions)
        if classes:
            predictions = tuple(_label(p) for p in predictions)
        return cls(
            job_id=event.job_id,
            model_id=result.model_id,
            predictions=predictions,
            classes=classes,
            probabilities=tuple(tuple(row.values) for row in result.probabilities),
            warnings=tuple(result.warnings),
            model_name=result.model_name,
            model_version=result.model_version,
            alias=result.alias,
        )


@dataclass(frozen=True)
class Job:
    """A job's record: what it is, where it is, and how it ended."""

    id: str
    kind: str
    state: str
    stage: str
    progress: float
    message: str
    attempt: int
    create_time: datetime | None
    update_time: datetime | None
    # For training jobs, the dataset and target; for both, the model made or used.
    dataset_id: str
    target: str
    model_id: str
    metrics: Mapping[str, float]
    error_code: str
    error_message: str
    proto: jobs_pb2.Job = field(repr=False, compare=False)
    # The name of the token that submitted the job, on a gateway with tokens.
    owner: str = ""
    # How many attempts the job may have (0 until a worker says), and why the latest attempt is
    # not the first ("the worker running attempt 1 stopped answering"), or why it ended without
    # an outcome when the job awaits its next attempt (stage "awaiting_retry").
    max_attempts: int = 0
    retry_reason: str = ""
    #: The search or scoring job a trial or shard job belongs to; "" for the others.
    parent_job_id: str = ""

    @property
    def job_id(self) -> str:
        """The job's id (``id``), by the name results and events give it."""
        return self.id

    @classmethod
    def from_proto(cls, job: jobs_pb2.Job) -> Job:
        last = job.last_event
        model_id = job.predict.model_id
        # A search's dataset is its train request's, a trial's too; its model is the refit's.
        train = {"search": job.search.train, "trial": job.trial.train}.get(
            job.WhichOneof("spec") or "", job.train
        )
        found = last.search_result if last.HasField("search_result") else last.train_result
        if last.HasField("train_result") or last.HasField("search_result"):
            model_id = found.model_id
        return cls(
            id=job.id,
            kind=kind_name(job.kind),
            state=state_name(job.state),
            stage=stage_name(last.stage),
            progress=last.progress,
            message=last.message,
            attempt=last.attempt,
            create_time=timestamp(job.create_time),
            update_time=timestamp(job.update_time),
            dataset_id=train.dataset_id,
            target=train.target,
            model_id=model_id,
            metrics=dict(found.metrics),
            error_code=last.error.code,
            error_message=last.error.message,
            proto=job,
            owner=job.owner,
            max_attempts=last.max_attempts,
            retry_reason=last.retry_reason,
            parent_job_id=job.parent_job_id,
        )


@dataclass(frozen=True)
class Model:
    """A trained model's record."""

    id: str
    job_id: str
    dataset_id: str
    target: str
    task: str
    estimator: str
    features: tuple[Column, ...]
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    classes: tuple[Any, ...]
    train_rows: int
    test_rows: int
    sklearn_version: str
    sha256: str
    size_bytes: int
    create_time: datetime | None
    proto: models_pb2.Model = field(repr=False, compare=False)
    # The registry's view: name and version ("" and 0 when unnamed), aliases of that version.
    name: str = ""
    version: int = 0
    aliases: tuple[str, ...] = ()
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    # Lineage: the sha256 of the data it was trained on; importances where the estimator has them.
    dataset_sha256: str = ""
    feature_importances: Mapping[str, float] = field(default_factory=dict)
    # The token whose job made it. Another caller's model comes without how it was made and how
    # it scores (dataset, estimator, params, metrics...), unless the token is admin or +all.
    owner: str = ""
    # How blanks are filled (TrainRequest.impute, "" for none) and each feature's fill value.
    impute: str = ""
    imputed: Mapping[str, Any] = field(default_factory=dict)
    # What training noticed (a feature like an identifier).
    warnings: tuple[str, ...] = ()
    # Shown through NAME@ALIAS: that alias, with its routes and shadow.
    through_alias: Alias | None = None

    @property
    def ref(self) -> str:
        """``NAME/VERSION`` for a named model, else its id."""
        return f"{self.name}/{self.version}" if self.name else self.id

    @classmethod
    def from_proto(cls, model: models_pb2.Model) -> Model:
        return cls(
            id=model.id,
            job_id=model.job_id,
            dataset_id=model.dataset_id,
            target=model.target,
            task=task_name(model.task),
            estimator=model.estimator,
            features=_columns(model.features),
            params=recorded_params(
                model.estimator, task_name(model.task), json_format.MessageToDict(model.params)
            ),
            metrics=dict(model.metrics),
            classes=tuple(_label(from_value(v)) for v in model.classes),
            train_rows=model.train_rows,
            test_rows=model.test_rows,
            sklearn_version=model.sklearn_version,
            sha256=model.sha256,
            size_bytes=model.size_bytes,
            create_time=timestamp(model.create_time),
            proto=model,
            name=model.name,
            version=model.version,
            aliases=tuple(model.aliases),
            description=model.description,
            tags=dict(model.tags),
            dataset_sha256=model.dataset_sha256,
            feature_importances=dict(model.feature_importances),
            owner=model.owner,
            impute=model.imputation.strategy,
            imputed={
                f.name: from_value(model.imputation.values[f.name])
                for f in model.features
                if f.name in model.imputation.values
            },
            warnings=tuple(model.warnings),
            through_alias=(
                Alias.from_proto(model.through_alias) if model.HasField("through_alias") else None
            ),
        )


@dataclass(frozen=True)
class Alias:
    """An alias of a model name, the version it points at, and the one it pointed at before
    (0: the alias is new)."""

    name: str
    alias: str
    version: int
    model_id: str
    previous_version: int = 0
    #: A weighted alias's routes, (version, weight in percent) in version order (``version`` is
    #: the heaviest); empty for an alias with one version.
    routes: tuple[tuple[int, int], ...] = ()
    #: The version requests through the alias are mirrored to; 0 for none.
    shadow_version: int = 0

    @classmethod
    def from_proto(cls, alias: models_pb2.ModelAlias, previous_version: int = 0) -> Alias:
        return cls(
            alias.name,
            alias.alias,
            alias.version,
            alias.model_id,
            previous_version,
            tuple((route.version, route.weight) for route in alias.routes),
            alias.shadow_version,
        )

    def describe(self) -> str:
        """``NAME@ALIAS -> NAME/3 90%, NAME/4 10%, shadow NAME/5``."""
        if self.routes:
            to = ", ".join(f"{self.name}/{v} {w}%" for v, w in self.routes)
        else:
            to = f"{self.name}/{self.version} ({self.model_id})"
        shadow = f", shadow {self.name}/{self.shadow_version}" if self.shadow_version else ""
        return f"{self.name}@{self.alias} -> {to}{shadow}"


@dataclass(frozen=True)
class Dataset:
    """A stored dataset: its columns and size."""

    id: str
    columns: tuple[Column, ...]
    rows: int
    builtin: bool
    size_bytes: int
    create_time: datetime | None
    proto: datasets_pb2.Dataset = field(repr=False, compare=False)
    sha256: str = ""
    # The token that uploaded it: replacing or deleting it needs that token or admin.
    owner: str = ""
    # How it is stored, and downloaded: "csv" or "parquet".
    format: str = ""

    @classmethod
    def from_proto(cls, dataset: datasets_pb2.Dataset) -> Dataset:
        return cls(
            id=dataset.id,
            columns=_columns(dataset.columns),
            rows=dataset.rows,
            builtin=dataset.builtin,
            size_bytes=dataset.size_bytes,
            create_time=timestamp(dataset.create_time),
            proto=dataset,
            sha256=dataset.sha256,
            owner=dataset.owner,
            format=dataset.format,
        )


def _columns(columns: Iterable[datasets_pb2.Column | models_pb2.Feature]) -> tuple[Column, ...]:
    return tuple(Column(c.name, c.dtype) for c in columns)
