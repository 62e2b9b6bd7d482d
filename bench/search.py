"""``python -m bench.search``: a hyperparameter search on mlgate's workers against scikit-learn's
own search on the same machine, in the same run.

mlgate runs as operators run it: ``mlgate gateway`` and two ``mlgate worker`` processes (one fit
at a time each, on one core) on the chosen broker. The reference is ``GridSearchCV(n_jobs=2)`` (and
``HalvingGridSearchCV(n_jobs=2)``) in this process over the same split, folds and candidates: the
seed forest (``RandomForestRegressor(max_depth=3, n_estimators=100)``, mlgate's defaults) on the
diabetes training part. Rounds alternate the systems; each system is warmed up once first. The
figure is wall time per search, mlgate's from calling Search to its SUCCEEDED event (the refit
included, which scikit-learn's ``refit=True`` does too).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestRegressor
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV, KFold, train_test_split

from bench.deployment import Deployment
from mlgate.v1 import jobs_pb2, jobs_pb2_grpc

GRID = {"max_depth": [2, 3, 4, 5], "min_samples_leaf": [1, 2, 4]}  # 12 candidates
HALVING_GRID = {
    "max_depth": [2, 3, 4, 5, 6, 8, 10, 12, 16],
    "min_samples_leaf": [1, 2, 4],
}  # 27 candidates: 27, 9, 3, 1 at 10, 30, 90, 270 trees
HALVING = jobs_pb2.Halving(resource="n_estimators", min_resources=10, max_resources=270, factor=3)
SEED = 42


def _request(grid: dict[str, list[Any]], folds: int, halving: bool) -> jobs_pb2.SearchRequest:
    request = jobs_pb2.SearchRequest(
        train=jobs_pb2.TrainRequest(dataset_id="diabetes", target="target"), cv_folds=folds
    )
    request.space.update(grid)
    if halving:
        request.halving.CopyFrom(HALVING)
    return request


def _mlgate(stub: jobs_pb2_grpc.JobServiceStub, request: jobs_pb2.SearchRequest) -> float:
    started = time.perf_counter()
    last = None
    for response in stub.Search(request, timeout=1800):
        last = response.event
    assert last is not None and last.state == jobs_pb2.JOB_STATE_SUCCEEDED, last
    return time.perf_counter() - started


def _sklearn(grid: dict[str, list[Any]], folds: int, halving: bool) -> float:
    frame = load_diabetes(as_frame=True).frame
    X, y = frame.drop(columns=["target"]), frame["target"]
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=SEED)
    cv = KFold(n_splits=folds, shuffle=True, random_state=SEED)
    forest = RandomForestRegressor(max_depth=3, n_estimators=100, random_state=SEED)
    started = time.perf_counter()
    if halving:
        search: Any = HalvingGridSearchCV(
            forest,
            grid,
            resource="n_estimators",
            min_resources=HALVING.min_resources,
            max_resources=HALVING.max_resources,
            factor=HALVING.factor,
            cv=cv,
            scoring="r2",
            random_state=SEED,
            n_jobs=2,
        )
    else:
        search = GridSearchCV(forest, grid, cv=cv, scoring="r2", n_jobs=2)
    search.fit(X_train, y_train)
    return time.perf_counter() - started


def _rounds(mlgate: Callable[[], float], sklearn: Callable[[], float], rounds: int) -> list[float]:
    mlgate(), sklearn()  # warm: the workers' fit processes, joblib's pool
    ratios = []
    for index in range(rounds):
        first, second = (mlgate, sklearn) if index % 2 == 0 else (sklearn, mlgate)
        a, b = first(), second()
        ours, theirs = (a, b) if first is mlgate else (b, a)
        ratios.append(ours / theirs)
        print(f"  round {index + 1}: mlgate {ours:.2f} s, scikit-learn {theirs:.2f} s", flush=True)
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__)
    parser.add_argument("--broker", default="redis", choices=["redis", "rabbitmq"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="one round of a 4-candidate grid (proves it runs)"
    )
    args = parser.parse_args(argv)
    grid, halving_grid, rounds = GRID, HALVING_GRID, args.rounds
    if args.quick:
        grid = {"max_depth": [2, 3], "min_samples_leaf": [1, 2]}
        halving_grid = {"max_depth": [2, 3, 4], "min_samples_leaf": [1, 2, 4]}
        rounds = 1
    with tempfile.TemporaryDirectory() as tmp:
        # One fit at a time per worker, on one core: as GridSearchCV(n_jobs=2) runs two
        # single-threaded forests at once.
        env = {"MLGATE_TRAIN_CONCURRENCY": "1", "MLGATE_FIT_CORES": "1"}
        deployment = Deployment(Path(tmp), args.broker, f"bench-search-{uuid.uuid4().hex[:8]}", env)
        try:
            address = deployment.gateway()
            deployment.workers(2)
            with grpc.insecure_channel(address) as channel:
                stub = jobs_pb2_grpc.JobServiceStub(channel)
                rows = []
                for name, space, halving in (
                    ("grid", grid, False),
                    ("halving", halving_grid, True),
                ):
                    count = len(space["max_depth"]) * len(space["min_samples_leaf"])
                    print(f"{name}: {count} candidates x {args.folds} folds", flush=True)
                    request = _request(space, args.folds, halving)
                    ratios = _rounds(
                        lambda r=request: _mlgate(stub, r),  # type: ignore[misc]
                        lambda s=space, h=halving: _sklearn(s, args.folds, h),  # type: ignore[misc]
                        rounds,
                    )
                    reference = "HalvingGridSearchCV" if halving else "GridSearchCV"
                    rows.append(
                        f"| {name}, {count} candidates x {args.folds} folds | {reference}"
                        f"(n_jobs=2) | {statistics.median(ratios):.2f}x | "
                        f"{', '.join(f'{r:.2f}' for r in ratios)} |"
                    )
        finally:
            deployment.stop()
    print(
        f"\nmlgate gateway + 2 workers ({args.broker}, one fit each) against scikit-learn in "
        "this process, seed forest on diabetes\n"
    )
    print("| search | reference | mlgate / reference, median (target ≤ 1.2x) | each round |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
