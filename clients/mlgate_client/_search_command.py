"""``mlgate search DATASET --target T --grid max_depth=2,3,4 [--random N --dist alpha=log:1e-4:1]
[--halving n_estimators:10:400]``: a hyperparameter search on the workers
(``MLGateClient.search``), printed as a leaderboard (``--json``, ``--csv``)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from typing import Any

from mlgate.v1 import jobs_pb2
from mlgate_client._commands import _follow, err, out
from mlgate_client._format import to_json
from mlgate_client._input import UsageError, parse_features, parse_params
from mlgate_client._search_calls import SearchCandidate, SearchResult, params_of
from mlgate_client.client import MLGateClient

__all__ = ["add_search_command", "cmd_search", "parse_dist", "parse_grid", "parse_halving"]


def add_search_command(commands: Any, add: Any) -> None:
    """``mlgate search``, added to the top-level ``commands`` with the CLI's ``add``."""
    search = add(
        commands,
        "search",
        cmd_search,
        "search hyperparameters by cross-validation on the workers; the best is refit and "
        "registered",
    )
    search.add_argument(
        "dataset", help="dataset id: diabetes, iris, wine, breast_cancer or uploaded"
    )
    search.add_argument("--target", required=True, help="column to predict")
    search.add_argument(
        "-f", "--features", action="append", metavar="NAMES", help="feature columns (default: all)"
    )
    search.add_argument("--estimator", metavar="NAME", help="estimator (default random_forest)")
    search.add_argument(
        "--param", action="append", metavar="NAME=VALUE", help="a fixed hyperparameter; repeatable"
    )
    search.add_argument(
        "--grid",
        action="append",
        metavar="NAME=V1,V2",
        help="values to try for a hyperparameter, comma-separated (each read as JSON, else a "
        "string); repeatable: every combination is a candidate",
    )
    search.add_argument(
        "--dist",
        action="append",
        metavar="NAME=SPEC",
        help="a random search's distribution: log:LOW:HIGH, uniform:LOW:HIGH, int:LOW:HIGH or "
        "choice:A,B,C; repeatable",
    )
    search.add_argument(
        "--random", type=int, default=0, metavar="N", help="draw N candidates (random search)"
    )
    search.add_argument("--cv", type=int, default=0, metavar="K", help="folds (default 5)")
    search.add_argument("--scoring", default="", help="scikit-learn scorer (default r2/accuracy)")
    search.add_argument(
        "--max-parallel", type=int, default=0, metavar="N", help="trials at once (default: all)"
    )
    search.add_argument(
        "--halving",
        metavar="RESOURCE[:MIN[:MAX[:FACTOR]]]",
        help="successive halving on n_samples or an integer parameter (n_estimators:10:400)",
    )
    search.add_argument("--test-size", type=float, help="held-out fraction (default 0.2)")
    search.add_argument("--seed", type=int, help="random seed (default 42)")
    search.add_argument("--name", default="", help="register the refit model under this name")
    search.add_argument("--csv", action="store_true", help="print the leaderboard as CSV")
    search.add_argument("--detach", action="store_true", help="print the job id and return")


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_grid(texts: list[str]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    for text in texts:
        name, sep, values = text.partition("=")
        if not sep or not name.strip() or not values:
            raise UsageError(f"--grid {text!r} is not NAME=V1,V2,...")
        grid[name.strip()] = [_value(v) for v in values.split(",")]
    return grid


def parse_dist(texts: list[str]) -> dict[str, Any]:
    space: dict[str, Any] = {}
    for text in texts:
        name, sep, spec = text.partition("=")
        kind, _, rest = spec.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--dist {text!r} is not NAME=SPEC")
        if kind == "choice" and rest:
            space[name.strip()] = {"choice": [_value(v) for v in rest.split(",")]}
            continue
        bounds = rest.split(":")
        if kind not in ("log", "uniform", "int") or len(bounds) != 2:
            raise UsageError(
                f"--dist {text!r}: use log:LOW:HIGH, uniform:LOW:HIGH, int:LOW:HIGH or choice:A,B"
            )
        try:
            low, high = float(bounds[0]), float(bounds[1])
        except ValueError:
            raise UsageError(f"--dist {text!r}: LOW and HIGH must be numbers") from None
        space[name.strip()] = {"low": low, "high": high, "log": kind == "log", "int": kind == "int"}
    return space


def parse_halving(text: str) -> dict[str, Any]:
    resource, *numbers = text.split(":")
    if not resource or len(numbers) > 3:
        raise UsageError(f"--halving {text!r} is not RESOURCE[:MIN[:MAX[:FACTOR]]]")
    try:
        values = [int(n) if n else 0 for n in numbers]
    except ValueError:
        raise UsageError(f"--halving {text!r}: MIN, MAX and FACTOR are whole numbers") from None
    names = ("min_resources", "max_resources", "factor")
    return {"resource": resource, **dict(zip(names, values, strict=False))}


def cmd_search(args: argparse.Namespace, client: MLGateClient) -> int:
    space: dict[str, Any] = {**parse_grid(args.grid or []), **parse_dist(args.dist or [])}
    if not space:
        raise UsageError("give the candidates: --grid NAME=V1,V2 (or --random N --dist ...)")
    options: dict[str, Any] = {
        "features": parse_features(args.features or ()),
        "estimator": args.estimator or "",
        "params": parse_params(args.param or ()),
        "n_candidates": args.random,
        "cv_folds": args.cv,
        "scoring": args.scoring,
        "max_parallel": args.max_parallel,
        "halving": parse_halving(args.halving) if args.halving else None,
        "test_size": args.test_size,
        "random_seed": args.seed,
        "model_name": args.name,
    }
    if args.detach:
        job_id = client.submit_search(args.dataset, args.target, space, **options)
        out(to_json({"job_id": job_id}) if args.json else job_id)
        return 0
    said = [-1]

    def run(on_event: Any) -> SearchResult:
        def seen(event: jobs_pb2.JobEvent) -> None:
            on_event(event)
            done = event.search_progress
            if event.HasField("search_progress") and done.trials_done != said[0]:
                said[0] = done.trials_done
                if done.trials_done and event.state == jobs_pb2.JOB_STATE_RUNNING:
                    trial = SearchCandidate.from_proto(done.trial)
                    best = params_of(done.best_params)
                    err(
                        f"{done.trials_done} of {done.trials_total} trials: {_params(trial.params)}"
                        f" {_score(trial)}; best {done.best_score:.4f} {_params(best)}"
                    )

        return client.search(args.dataset, args.target, space, on_event=seen, **options)

    result: SearchResult = _follow(run)
    if args.json:
        out(to_json(result))
    elif args.csv:
        out(leaderboard_csv(result))
    else:
        out(search_summary(result))
    return 0


def _params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={json.dumps(v)}" for k, v in params.items())


def _score(row: SearchCandidate) -> str:
    return "failed" if math.isnan(row.mean) else f"{row.mean:.4f}"


_COLUMNS = ("rank", "params", "mean", "std", "fit_seconds", "rung", "error")


def _cells(row: SearchCandidate) -> list[str]:
    blank = math.isnan(row.mean)
    return [
        str(row.rank),
        _params(row.params),
        "" if blank else f"{row.mean:.6f}",
        "" if blank else f"{row.std:.6f}",
        f"{row.fit_seconds:.3f}",
        str(row.rung),
        row.error,
    ]


def leaderboard_csv(result: SearchResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(_COLUMNS)
    writer.writerows(_cells(row) for row in result.leaderboard())
    return buffer.getvalue().rstrip("\n")


def search_summary(result: SearchResult) -> str:
    rows = [list(_COLUMNS), *(_cells(row) for row in result.leaderboard())]
    rows = [[cell if len(cell) <= 60 else cell[:57] + "..." for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    table = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    model = result.model_id
    if result.model_name:
        model = f"{result.model_name}/{result.model_version} ({result.model_id})"
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(result.metrics.items()))
    return "\n".join(
        [
            *table,
            "",
            f"job:      {result.job_id}",
            f"best:     {_params(result.best_params)} ({result.scoring} {result.best_score:.4f})",
            f"model:    {model}",
            f"holdout:  {metrics}",
        ]
    )
