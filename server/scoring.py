"""Batch scoring (``JobService.Score``), the gateway's side: the request checked at the edge
(``checked_score``), and the SCORE plan the fan-out coordinator carries out (``ScorePlan``, see
``server.fanout``).

A SCORE job's rows are split into ranges (``mlgate.scoring.shard_ranges``), one SHARD child
each, at most ``MAX_PARALLEL`` outstanding; each stores its part (``workers.scoring``). When
every shard has succeeded, one more SHARD child (``ShardSpec.commit``) joins the parts into the
output dataset; its success is the job's. A shard that fails (after its attempts) fails the job
with the shard's reason, and no commit is made: the output never appears in part. The workers
remove the parts when a shard fails or is cancelled, and after the commit.

Pure and pandas-free: the plan reads only the records it is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from google.protobuf import struct_pb2

from mlgate.errors import InvalidField, PermissionDenied
from mlgate.ids import check_dataset_id
from mlgate.scoring import FORMATS, PREDICTION, proba_column, shard_ranges
from mlgate.v1 import jobs_pb2
from server.fanout import Step, new_child
from server.model_catalog import ModelCatalog
from server.ownership import sees_details
from storage.datasets import DatasetCatalog

__all__ = ["MAX_PARALLEL", "ScorePlan", "checked_score"]

#: Shards outstanding at once: enough to keep every worker of a fleet busy (each takes several
#: at once, up to its predict prefetch), few enough that cancelling leaves little to stop.
MAX_PARALLEL = 16
# Of a job's progress, what the shards' rows count for; the commit is the rest.
_SCORED_SHARE = 0.95
_COMMIT_KEY = "commit"
_NUMBERS = ("numeric", "integer")


async def checked_score(
    request: jobs_pb2.ScoreRequest, catalog: DatasetCatalog, models: ModelCatalog
) -> tuple[jobs_pb2.ScoreRequest, int]:
    """The request as the job records it (the model resolved to an id, with its name and
    version; the format and rows per shard decided) and the dataset's rows. Raises
    InvalidField, NotFound or AlreadyExists naming what to change."""
    if not request.dataset_id:
        raise InvalidField("dataset_id", "is required: the dataset to score")
    if not request.output_dataset_id:
        raise InvalidField("output_dataset_id", "is required: the id of the dataset to write")
    check_dataset_id(request.output_dataset_id, "output_dataset_id")
    if request.format and request.format not in FORMATS:
        raise InvalidField("format", f"{request.format!r} is not csv or parquet")
    if request.shard_rows < 0:
        raise InvalidField("shard_rows", "must not be negative (0 lets the gateway choose)")
    model_id = await models.resolve(request.model_id)
    record = await models.manifest(model_id)
    # Its name and version, for the result (the id's identity, not an alias's draw).
    named = await models.route(model_id)
    schema = await asyncio.to_thread(catalog.describe, request.dataset_id)
    if not schema.builtin and not sees_details(schema.owner):
        # The output copies the rows (and is its submitter's to download): the data's rights,
        # as downloading it takes (server.dataset_download).
        whose = f"belongs to {schema.owner!r}" if schema.owner else "has no owner"
        raise PermissionDenied(
            f"scoring dataset {request.dataset_id!r} copies its rows into a dataset of yours, "
            f"which is for its owner, the admin role or a +all token: it {whose}"
        )
    await asyncio.to_thread(catalog.refuse_existing, request.output_dataset_id)
    columns = [c.name for c in schema.columns]
    dtypes = {c.name: c.dtype for c in schema.columns}
    for feature in record.features:
        if feature.name not in columns:
            raise InvalidField(
                "dataset_id",
                f"dataset {request.dataset_id!r} has no column {feature.name!r}, a feature of "
                f"model {model_id}",
            )
        if (feature.dtype in _NUMBERS) != (dtypes[feature.name] in _NUMBERS):
            raise InvalidField(
                "dataset_id",
                f"column {feature.name!r} of dataset {request.dataset_id!r} is "
                f"{dtypes[feature.name]}, but model {model_id} was trained on it as "
                f"{feature.dtype}",
            )
    seen: set[str] = set()
    for name in request.keep_columns:
        if name not in columns:
            raise InvalidField(
                "keep_columns",
                f"{name!r} is not a column of dataset {request.dataset_id!r}; its columns are "
                f"{', '.join(columns)}",
            )
        if name in seen:
            raise InvalidField("keep_columns", f"{name!r} is listed twice")
        seen.add(name)
    kept = list(request.keep_columns) or columns
    made = {PREDICTION, *(proba_column(_label(v)) for v in record.classes)}
    clash = next((name for name in kept if name in made), None)
    if clash is not None:
        field = "keep_columns" if request.keep_columns else "dataset_id"
        raise InvalidField(
            field,
            f"column {clash!r} would clash with the output's own {clash!r}; list the columns "
            "to keep (keep_columns) without it",
        )
    checked = jobs_pb2.ScoreRequest()
    checked.CopyFrom(request)
    checked.model_id = model_id
    checked.model_name = named.name
    checked.model_version = named.version
    checked.dataset_sha256 = schema.sha256
    checked.format = request.format or schema.format or "csv"
    return checked, schema.rows


def _label(value: struct_pb2.Value) -> Any:
    """A manifest's class label as a plain value."""
    kind = value.WhichOneof("kind")
    return getattr(value, kind) if kind else None


class ScorePlan:
    """The SCORE plan: shards, then the commit, then the outcome (see the module docstring).

    The shards' ranges come from the dataset's rows as the gateway described them when the job
    was submitted, recorded in the parent (``ScoreRequest.shard_rows`` is set to the size used,
    and the total is the last shard's end, kept in ``Job.row_count``)."""

    def advance(self, parent: jobs_pb2.Job, children: Sequence[jobs_pb2.Job]) -> Step:
        request = parent.score
        if parent.row_count <= 0:  # every stored dataset has rows: never an empty output
            return Step(
                error=jobs_pb2.JobError(
                    code="INTERNAL", message="the scoring job's record lost its row count"
                )
            )
        ranges = shard_ranges(parent.row_count, int(request.shard_rows))
        shards = [self._shard(parent, i, r, len(ranges)) for i, r in enumerate(ranges)]
        by_id = {child.id: child for child in children}
        total = parent.row_count
        done_rows = 0
        done = 0
        for index, shard in enumerate(shards):
            child = by_id.get(shard.id)
            if child is None:
                continue
            if child.state == jobs_pb2.JOB_STATE_SUCCEEDED:
                done += 1
                done_rows += child.last_event.shard_result.rows
            elif child.state in (jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED):
                start, end = ranges[index]
                return Step(
                    error=_failed(
                        child, f"shard {index + 1} of {len(shards)} (rows {start + 1} to {end})"
                    )
                )
        progress = jobs_pb2.ScoreProgress(
            rows_done=done_rows, rows_total=total, shards_done=done, shards_total=len(shards)
        )
        fraction = _SCORED_SHARE * done_rows / total if total else 0.0
        if done < len(shards):
            return Step(
                children=shards,
                max_parallel=MAX_PARALLEL,
                progress={
                    "stage": jobs_pb2.STAGE_FANNING_OUT,
                    "progress": fraction,
                    "score_progress": progress,
                    "message": f"{done_rows:,} of {total:,} rows scored "
                    f"({done} of {len(shards)} shards)",
                },
            )
        commit = self._commit(parent, len(shards))
        described = _described([by_id[shard.id].last_event.shard_result for shard in shards])
        if described is not None and request.format == "csv":
            commit.shard.end_row = total
            commit.shard.columns.extend(name for name, _ in described)
            commit.shard.dtypes.extend(dtype for _, dtype in described)
        child = by_id.get(commit.id)
        if child is None or child.state in (jobs_pb2.JOB_STATE_QUEUED, jobs_pb2.JOB_STATE_RUNNING):
            return Step(
                children=[commit],
                progress={
                    "stage": jobs_pb2.STAGE_COMMITTING,
                    "progress": fraction,
                    "score_progress": progress,
                    "message": f"writing dataset {request.output_dataset_id!r}",
                },
            )
        if child.state != jobs_pb2.JOB_STATE_SUCCEEDED:
            return Step(error=_failed(child, "writing the output dataset"))
        written = child.last_event.shard_result
        return Step(
            result={
                "score_result": jobs_pb2.ScoreResult(
                    output_dataset_id=request.output_dataset_id,
                    rows=written.rows,
                    model_id=request.model_id,
                    model_name=request.model_name,
                    model_version=request.model_version,
                    format=request.format,
                    columns=written.columns,
                ),
                "score_progress": progress,
                "progress": 1.0,
            }
        )

    def _shard(
        self, parent: jobs_pb2.Job, index: int, rows: tuple[int, int], shards: int
    ) -> jobs_pb2.Job:
        child = new_child(parent, jobs_pb2.JOB_KIND_SHARD, f"shard/{index}")
        child.shard.score.CopyFrom(parent.score)
        child.shard.index = index
        child.shard.start_row, child.shard.end_row = rows
        child.shard.shards = shards
        return child

    def _commit(self, parent: jobs_pb2.Job, shards: int) -> jobs_pb2.Job:
        child = new_child(parent, jobs_pb2.JOB_KIND_SHARD, _COMMIT_KEY)
        child.shard.score.CopyFrom(parent.score)
        child.shard.shards = shards
        child.shard.commit = True
        return child


def _failed(child: jobs_pb2.Job, what: str) -> jobs_pb2.JobError:
    """The job's error for a child that did not succeed: the child's own code and reason."""
    if child.state == jobs_pb2.JOB_STATE_CANCELLED:
        return jobs_pb2.JobError(
            code="ABORTED", message=f"{what} was cancelled ({child.id}), so nothing was written"
        )
    error = child.last_event.error
    return jobs_pb2.JobError(
        code=error.code or "INTERNAL",
        message=f"{what} failed: {error.message}; nothing was written",
    )


def _described(results: Sequence[jobs_pb2.ShardResult]) -> list[tuple[str, str]] | None:
    """The output's columns and dtypes as pandas reads the joined CSV, from each part's as it
    reads back: a column is one dtype where every part agrees; integer in some parts and
    numeric in others (blanks, or a part of blanks only) is numeric, as csv_dtypes decides for
    the whole; any other mix is string. None when a shard did not say (the commit then
    describes the file itself)."""
    if not results or any(not r.dtypes or len(r.dtypes) != len(r.columns) for r in results):
        return None
    columns = list(results[0].columns)
    if any(list(r.columns) != columns for r in results):
        return None
    merged = []
    for c, name in enumerate(columns):
        seen = {r.dtypes[c] for r in results}
        if len(seen) == 1:
            dtype = seen.pop()
        elif seen <= {"integer", "numeric"}:
            dtype = "numeric"
        else:
            dtype = "string"
        merged.append((name, dtype))
    return merged
