"""``mlgate score MODEL DATASET --output ID [--format parquet] [--keep COL]``: batch scoring of a
stored dataset on the workers (``MLGateClient.score``); stderr shows the job's progress in rows
as its events say it."""

from __future__ import annotations

import argparse
from typing import Any

from mlgate_client._commands import _follow, out
from mlgate_client._format import to_json
from mlgate_client._input import parse_features
from mlgate_client._score_calls import ScoreResult
from mlgate_client.client import MLGateClient

__all__ = ["add_score_command", "cmd_score", "score_summary"]


def add_score_command(commands: Any, add: Any) -> None:
    """``mlgate score``, added to the top-level ``commands`` with the CLI's ``add``."""
    score = add(
        commands,
        "score",
        cmd_score,
        "predict every row of a stored dataset on the workers, into a new dataset",
    )
    score.add_argument("model", help="model reference: id, NAME, NAME/VERSION or NAME@ALIAS")
    score.add_argument("dataset", help="the stored dataset to score")
    score.add_argument(
        "-o", "--output", required=True, metavar="ID", help="id of the dataset to write (new)"
    )
    score.add_argument(
        "--format", choices=["csv", "parquet"], help="the output's format (default: the input's)"
    )
    score.add_argument(
        "--keep",
        action="append",
        metavar="COL",
        help="input column to copy before the predictions, repeatable or comma-separated "
        "(default: every column)",
    )
    score.add_argument(
        "--shard-rows", type=int, default=0, metavar="N", help="rows per shard (default: chosen)"
    )
    score.add_argument("--detach", action="store_true", help="print the job id and return")


def cmd_score(args: argparse.Namespace, client: MLGateClient) -> int:
    request: dict[str, Any] = {
        "model": args.model,
        "dataset_id": args.dataset,
        "output_dataset_id": args.output,
        "keep_columns": parse_features(args.keep or ()),
        "format": args.format or "",
        "shard_rows": args.shard_rows,
    }
    if args.detach:
        job_id = client.submit_score(**request)
        out(to_json({"job_id": job_id}) if args.json else job_id)
        return 0
    result: ScoreResult = _follow(lambda on_event: client.score(**request, on_event=on_event))
    out(to_json(result) if args.json else score_summary(result))
    return 0


def score_summary(result: ScoreResult) -> str:
    model = result.model_id
    if result.model_name:
        model = f"{result.model_name}/{result.model_version} ({result.model_id})"
    return "\n".join(
        [
            f"job:      {result.job_id}",
            f"dataset:  {result.output_dataset_id} ({result.format}, {result.rows:,} rows)",
            f"model:    {model}",
            f"columns:  {', '.join(result.columns)}",
        ]
    )
