"""The SCORE plan (server/scoring.py) as a pure function of the parent's and its children's
records: shards of rows, progress in rows, the commit with the parts' merged dtypes, and the
outcome or the failing shard's reason."""

from __future__ import annotations

import pytest

from mlgate.scoring import MAX_SHARDS, output_columns, proba_column, shard_ranges
from mlgate.v1 import jobs_pb2
from server.scoring import MAX_PARALLEL, ScorePlan, _described


def _parent(rows: int, shard_rows: int, fmt: str = "csv") -> jobs_pb2.Job:
    job = jobs_pb2.Job(id="job_" + "a" * 32, kind=jobs_pb2.JOB_KIND_SCORE, row_count=rows)
    job.score.CopyFrom(
        jobs_pb2.ScoreRequest(
            model_id="mdl_" + "b" * 32,
            dataset_id="rows",
            output_dataset_id="out",
            format=fmt,
            shard_rows=shard_rows,
            model_name="m",
            model_version=2,
        )
    )
    return job


def _ended(child: jobs_pb2.Job, state: int, **result: object) -> jobs_pb2.Job:
    ended = jobs_pb2.Job()
    ended.CopyFrom(child)
    ended.state = state  # type: ignore[assignment]
    ended.last_event.state = state  # type: ignore[assignment]
    if state == jobs_pb2.JOB_STATE_SUCCEEDED:
        ended.last_event.shard_result.CopyFrom(jobs_pb2.ShardResult(**result))  # type: ignore[arg-type]
    return ended


def test_shard_ranges_cover_the_rows_in_order() -> None:
    assert shard_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert shard_ranges(3, 0) == [(0, 3)]
    many = shard_ranges(10_000_000, 1)
    assert len(many) <= MAX_SHARDS and many[-1][1] == 10_000_000


def test_output_columns_name_each_class() -> None:
    assert output_columns(["id"], [0.0, 1.0]) == ["id", "prediction", "proba_0", "proba_1"]
    assert proba_column(True) == "proba_true" and proba_column("cat") == "proba_cat"
    assert output_columns(["id"], []) == ["id", "prediction"]


def test_shards_then_the_commit_then_the_result() -> None:
    plan = ScorePlan()
    parent = _parent(10, 4)
    step = plan.advance(parent, [])
    shards = list(step.children)
    assert [(c.shard.start_row, c.shard.end_row) for c in shards] == [(0, 4), (4, 8), (8, 10)]
    assert all(c.parent_job_id == parent.id and c.kind == jobs_pb2.JOB_KIND_SHARD for c in shards)
    assert step.max_parallel == MAX_PARALLEL
    assert step.progress is not None and step.progress["stage"] == jobs_pb2.STAGE_FANNING_OUT
    assert [c.id for c in plan.advance(parent, []).children] == [c.id for c in shards]

    done = [
        _ended(
            c,
            jobs_pb2.JOB_STATE_SUCCEEDED,
            rows=c.shard.end_row - c.shard.start_row,
            columns=["id", "prediction"],
            dtypes=["integer", dtype],
        )
        for c, dtype in zip(shards, ["numeric", "integer", "numeric"], strict=True)
    ]
    halfway = plan.advance(parent, done[:2])
    assert halfway.progress is not None
    assert halfway.progress["score_progress"].rows_done == 8
    assert halfway.progress["score_progress"].shards_done == 2

    step = plan.advance(parent, done)
    (commit,) = step.children
    assert commit.shard.commit and commit.shard.shards == 3 and commit.shard.end_row == 10
    assert list(commit.shard.columns) == ["id", "prediction"]
    assert list(commit.shard.dtypes) == ["integer", "numeric"]
    assert step.progress is not None and step.progress["stage"] == jobs_pb2.STAGE_COMMITTING

    written = _ended(commit, jobs_pb2.JOB_STATE_SUCCEEDED, rows=10, columns=["id", "prediction"])
    final = plan.advance(parent, [*done, written])
    assert final.result is not None
    result = final.result["score_result"]
    assert (result.output_dataset_id, result.rows, result.model_name, result.model_version) == (
        "out",
        10,
        "m",
        2,
    )
    assert list(result.columns) == ["id", "prediction"]


def test_a_failed_shard_fails_the_job_with_its_reason() -> None:
    plan = ScorePlan()
    parent = _parent(10, 4)
    shards = list(plan.advance(parent, []).children)
    failed = _ended(shards[1], jobs_pb2.JOB_STATE_FAILED)
    failed.last_event.error.CopyFrom(jobs_pb2.JobError(code="INVALID_ARGUMENT", message="blank"))
    step = plan.advance(parent, [failed])
    assert step.error is not None and step.error.code == "INVALID_ARGUMENT"
    assert "shard 2 of 3 (rows 5 to 8) failed: blank" in step.error.message


@pytest.mark.parametrize(
    ("dtypes", "merged"),
    [
        (["integer", "integer"], "integer"),
        (["integer", "numeric"], "numeric"),
        (["boolean", "numeric"], "string"),
        (["string", "numeric"], "string"),
        (["boolean", "boolean"], "boolean"),
    ],
)
def test_parts_dtypes_merge_as_a_whole_file_reads(dtypes: list[str], merged: str) -> None:
    results = [jobs_pb2.ShardResult(rows=1, columns=["c"], dtypes=[d]) for d in dtypes]
    assert _described(results) == [("c", merged)]
    assert _described([*results, jobs_pb2.ShardResult(rows=1)]) is None
