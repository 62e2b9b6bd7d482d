"""Building request messages from plain Python values, with the client-side checks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any, TypeVar

from google.protobuf import struct_pb2

from mlgate.v1 import datasets_pb2, jobs_pb2
from mlgate_client.errors import InvalidArgument

__all__ = [
    "KINDS",
    "STATES",
    "TASKS",
    "choice",
    "columns_request",
    "struct",
    "train_request",
    "upload_requests",
]

T = TypeVar("T")

KINDS = {
    "train": jobs_pb2.JOB_KIND_TRAIN,
    "predict": jobs_pb2.JOB_KIND_PREDICT,
    "search": jobs_pb2.JOB_KIND_SEARCH,
    "score": jobs_pb2.JOB_KIND_SCORE,
    "trial": jobs_pb2.JOB_KIND_TRIAL,
    "shard": jobs_pb2.JOB_KIND_SHARD,
}
STATES = {
    "queued": jobs_pb2.JOB_STATE_QUEUED,
    "running": jobs_pb2.JOB_STATE_RUNNING,
    "succeeded": jobs_pb2.JOB_STATE_SUCCEEDED,
    "failed": jobs_pb2.JOB_STATE_FAILED,
    "cancelled": jobs_pb2.JOB_STATE_CANCELLED,
}
TASKS = {"regression": jobs_pb2.TASK_REGRESSION, "classification": jobs_pb2.TASK_CLASSIFICATION}


def choice(table: Mapping[str, T], value: str | None, field: str, default: T) -> T:
    """The enum value for a short name; None or "" means ``default``."""
    if value is None or value == "":
        return default
    if value not in table:
        raise InvalidArgument(
            f"{field}: {value!r} is not one of {', '.join(table)}", "INVALID_ARGUMENT"
        )
    return table[value]


def train_request(
    dataset_id: str,
    target: str,
    features: Sequence[str],
    estimator: str,
    params: Mapping[str, Any] | None,
    task: str | None,
    test_size: float | None,
    random_seed: int | None,
    *,
    impute: str = "",
    exclude: Sequence[str] = (),
) -> jobs_pb2.TrainRequest:
    """A TrainRequest; optional fields stay unset when None so the server's defaults apply."""
    for name, names in (("features", features), ("exclude", exclude)):
        if isinstance(names, str):
            raise TypeError(f"{name} must be a sequence of column names, not one string")
    request = jobs_pb2.TrainRequest(
        dataset_id=dataset_id,
        target=target,
        features=list(features),
        estimator=estimator,
        task=choice(TASKS, task, "task", jobs_pb2.TASK_UNSPECIFIED),
        impute=impute,
        exclude=list(exclude),
    )
    if params:
        request.params.CopyFrom(struct(params, "params"))
    if test_size is not None:
        request.test_size = test_size
    if random_seed is not None:
        request.random_seed = random_seed
    return request


def struct(values: Mapping[str, Any], field: str) -> struct_pb2.Struct:
    """A Struct of JSON-like values; anything else is an InvalidArgument naming ``field``."""
    message = struct_pb2.Struct()
    try:
        message.update(values)
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidArgument(
            f"{field}: only JSON values (numbers, strings, booleans, null, lists, objects) ({exc})",
            "INVALID_ARGUMENT",
        ) from exc
    return message


def upload_requests(
    dataset_id: str,
    file: IO[bytes],
    chunk_size: int,
    replace: bool = False,
    delimiter: str = "",
    form: str = "",
) -> Iterator[datasets_pb2.UploadDatasetRequest]:
    # The first message names the dataset; an empty file still sends it.
    first = datasets_pb2.UploadDatasetRequest(
        dataset_id=dataset_id,
        chunk=file.read(chunk_size),
        replace=replace,
        delimiter=delimiter,
        format=form,
    )
    yield first
    if not first.chunk:
        return
    while chunk := file.read(chunk_size):
        yield datasets_pb2.UploadDatasetRequest(chunk=chunk)


def _column_kind(name: str, values: Sequence[Any]) -> str:
    """The typed field a column's values fit: bools, int64s, doubles or strings."""
    if not values:
        return "doubles"  # the gateway says what an empty column lacks
    if all(isinstance(v, bool) for v in values):
        return "bools"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int64s"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "doubles"
    if all(isinstance(v, str) for v in values):
        return "strings"
    raise InvalidArgument(
        f"columns.{name}: a column holds values of one kind: numbers, strings or booleans",
        "INVALID_ARGUMENT",
    )


def columns_request(model_id: str, columns: Mapping[str, Iterable[Any]]) -> jobs_pb2.PredictRequest:
    """A PredictRequest with one typed column per feature. A column may be a list or anything
    with ``tolist()`` (a numpy array, a pandas Series); its kind follows its values."""
    request = jobs_pb2.PredictRequest(model_id=model_id)
    for name, given in columns.items():
        tolist = getattr(given, "tolist", None)
        values = tolist() if callable(tolist) else list(given)
        column = request.columns.add(name=name)
        getattr(column, _column_kind(name, values)).values.extend(values)
    return request
