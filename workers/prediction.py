"""Prediction jobs as a plain function: a request's rows or columns, checked against the model's
inputs, become the evaluator's ``Inputs`` once (``workers.tensors``), and one evaluation
(``workers.evaluation``, which online inference shares) answers every row in order."""

from __future__ import annotations

from typing import Any

from mlgate import tracing
from mlgate.columns import check_columns
from mlgate.jobs import check_rows, from_struct
from mlgate.metrics import INFERENCE_BATCH_ROWS
from mlgate.v1 import jobs_pb2, models_pb2
from workers.categories import unseen_categories
from workers.evaluation import evaluate
from workers.tensors import Inputs, column_of, from_columns, from_rows
from workers.values import add_values, plain

__all__ = ["predict"]


def predict(
    model: Any, record: models_pb2.Model, request: jobs_pb2.PredictRequest
) -> jobs_pb2.PredictResult:
    """One prediction per row, in order; for classifiers, the classes and per-row probabilities;
    a warning per categorical feature with values training never saw. Raises InvalidArgument
    naming the first row, column or value the model cannot take."""
    inputs, count = _inputs(request, record)
    INFERENCE_BATCH_ROWS.observe(count)
    with tracing.span("predict", rows=count):
        predicted, proba = evaluate(model, record, inputs)
    result = jobs_pb2.PredictResult(model_id=request.model_id)
    add_values(result.predictions, predicted.tolist())
    add_values(result.classes, [plain(c) for c in getattr(model, "classes_", [])])
    if proba is not None:
        for row in proba.tolist():
            result.probabilities.add(values=row)
    result.warnings.extend(unseen_categories(model, lambda name: column_of(inputs, record, name)))
    return result


def _inputs(request: jobs_pb2.PredictRequest, record: models_pb2.Model) -> tuple[Inputs, int]:
    """The request's rows or columns as the evaluator takes them, and how many rows they are."""
    if request.columns:
        count = check_columns(request.columns, record.features)
        return from_columns(request.columns, record), count
    rows = [from_struct(row) for row in request.rows]
    check_rows(rows, record.features)
    return from_rows(rows, record), len(rows)
