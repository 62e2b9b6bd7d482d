"""The arguments of ``mlgate train`` and ``mlgate predict``, and of every command naming a model."""

from __future__ import annotations

import argparse

from mlgate_client._requests import TASKS
from mlgate_client.estimators import DEFAULT_ESTIMATOR, ESTIMATORS

__all__ = ["model_argument", "predict_arguments", "train_arguments"]

_ESTIMATOR_HELP = "one of: {}; default: {}".format(
    ", ".join(
        name if len(spec.classes) == len(TASKS) else f"{name} ({next(iter(spec.classes))} only)"
        for name, spec in ESTIMATORS.items()
    ),
    DEFAULT_ESTIMATOR,
)
_TASK_HELP = (
    "what to predict; default: inferred from the target: real numbers are regression; "
    "labels, and integers with at most 20 distinct values, are classification"
)


def model_argument(sub: argparse.ArgumentParser, dest: str = "model_id") -> None:
    sub.add_argument(dest, metavar="MODEL", help="model id, NAME, NAME/VERSION or NAME@ALIAS")


def train_arguments(train: argparse.ArgumentParser) -> None:
    train.add_argument(
        "dataset", help="dataset id: diabetes, iris, wine, breast_cancer or uploaded"
    )
    train.add_argument("--target", required=True, help="column to predict")
    train.add_argument(
        "-f",
        "--features",
        action="append",
        metavar="NAMES",
        help="feature columns, comma-separated or repeated (default: all but the target)",
    )
    train.add_argument(
        "--exclude",
        action="append",
        metavar="NAMES",
        help="columns to leave out of the features (an id, a note), comma-separated or repeated",
    )
    train.add_argument(
        "--impute",
        metavar="STRATEGY",
        help="fill blanks in the features, in training and every prediction: median, mean, "
        "most_frequent or constant:VALUE (scikit-learn's SimpleImputer; string and boolean "
        "features take their most frequent value unless constant)",
    )
    train.add_argument("--estimator", metavar="NAME", help=_ESTIMATOR_HELP)
    train.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="hyperparameter, value read as JSON or else as a string; repeatable",
    )
    train.add_argument("--task", choices=list(TASKS), help=_TASK_HELP)
    train.add_argument("--test-size", type=float, help="held-out fraction (default 0.2)")
    train.add_argument("--seed", type=int, help="random seed (default 42)")
    train.add_argument(
        "--time-limit",
        type=float,
        metavar="SECONDS",
        help="stop the fit after this long: FAILED, DEADLINE_EXCEEDED (the server's limit caps it)",
    )
    train.add_argument("--detach", action="store_true", help="print the job id and return")
    train.add_argument(
        "--name", help="register the model as the next version of this name (e.g. diabetes-rf)"
    )


def predict_arguments(predict: argparse.ArgumentParser) -> None:
    model_argument(predict)
    predict.add_argument("stdin", nargs="?", choices=["-"], help="read rows from stdin")
    predict.add_argument("--row", action="append", metavar="JSON", help="one row; repeatable")
    predict.add_argument("--rows-file", metavar="FILE", help="JSON list of rows or JSON Lines")
    predict.add_argument(
        "--columns",
        action="store_true",
        help="send the rows as columns (one typed array per feature): cheaper for many rows",
    )
    predict.add_argument(
        "--csv",
        metavar="FILE",
        help="score a CSV file of any size online (ModelInfer), in chunks; one prediction per row",
    )
    predict.add_argument("--out", metavar="FILE", help="with --csv: write predictions here (CSV)")
    predict.add_argument(
        "--keep",
        action="append",
        metavar="NAMES",
        help="with --csv: copy these columns of the file into the output, before the "
        "predictions (an id); comma-separated or repeated",
    )
    predict.add_argument(
        "--chunk-rows", type=int, default=10_000, help="with --csv: rows per request (10000)"
    )
    predict.add_argument(
        "--routing-key",
        default="",
        metavar="KEY",
        help="through a weighted alias (NAME@ALIAS), send every request with this key (a user or "
        "account id) to the same version",
    )
