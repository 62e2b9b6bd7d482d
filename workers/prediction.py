"""Prediction jobs as a plain function: a request's rows or columns, checked against the model's
inputs (``mlgate.inputs``), become the evaluator's ``Inputs`` once (``workers.tensors``), blanks
are filled for an imputed model (``workers.imputation``), and one evaluation
(``workers.evaluation``, which online inference shares) answers every row in order."""

from __future__ import annotations

from typing import Any

from mlgate import tracing
from mlgate.inputs import check_predict, notes, row_keys
from mlgate.jobs import from_struct
from mlgate.metrics import INFERENCE_BATCH_ROWS
from mlgate.v1 import jobs_pb2, models_pb2
from workers.categories import unseen_categories
from workers.evaluation import evaluate
from workers.imputation import fill
from workers.tensors import Inputs, column_of, from_columns, from_rows
from workers.values import add_values, plain

__all__ = ["input_warnings", "predict"]


def predict(
    model: Any, record: models_pb2.Model, request: jobs_pb2.PredictRequest
) -> jobs_pb2.PredictResult:
    """One prediction per row, in order; for classifiers, the classes and per-row probabilities;
    warnings about what the rows sent (``input_warnings``). Raises InvalidField naming the
    first row, column or value the model cannot take."""
    rows = [from_struct(row) for row in request.rows]
    count = check_predict(request, record, rows)
    if request.columns:
        sent = [column.name for column in request.columns]
        inputs = from_columns(request.columns, record)
    else:
        sent = row_keys(rows)
        inputs = from_rows(rows, record)
    inputs = fill(inputs, record)
    INFERENCE_BATCH_ROWS.observe(count)
    with tracing.span("predict", rows=count):
        predicted, proba = evaluate(model, record, inputs)
    result = jobs_pb2.PredictResult(
        model_id=request.model_id,
        model_name=request.resolved_name,
        model_version=request.resolved_version,
        alias=request.resolved_alias,
    )
    add_values(result.predictions, predicted.tolist())
    add_values(result.classes, [plain(c) for c in getattr(model, "classes_", [])])
    if proba is not None:
        for row in proba.tolist():
            result.probabilities.add(values=row)
    result.warnings.extend(input_warnings(model, record, sent, inputs))
    return result


def input_warnings(
    model: Any, record: models_pb2.Model, sent: list[str], inputs: Inputs
) -> list[str]:
    """What a person should know about a prediction's inputs, the same for jobs and ModelInfer:
    names ignored, features not sent, values of string and boolean features never seen in
    training (blanks filled already, for an imputed model)."""
    return [
        *notes(sent, record),
        *unseen_categories(model, lambda name: column_of(inputs, record, name)),
    ]
