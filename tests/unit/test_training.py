"""Training and prediction as plain functions, with no broker or storage involved."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from google.protobuf import json_format
from sklearn.datasets import load_iris

from mlgate import jobs
from mlgate.errors import FailedPrecondition, InvalidField
from mlgate.inputs import check_rows
from mlgate.v1 import datasets_pb2, jobs_pb2, models_pb2
from workers import prediction, training

STAGES: list[tuple[int, float]] = []


def _schema(frame: pd.DataFrame, dataset_id: str = "data") -> datasets_pb2.Dataset:
    from storage.datasets import dtype_name

    schema = datasets_pb2.Dataset(id=dataset_id, rows=len(frame))
    for name, dtype in frame.dtypes.items():
        schema.columns.add(name=str(name), dtype=dtype_name(dtype))
    return schema


def _predict(
    model: Any, record: models_pb2.Model, rows: Sequence[Mapping[str, Any]]
) -> tuple[list[Any], list[Any], list[list[float]]]:
    """A prediction job's rows through the worker's prediction: predictions, classes and
    probabilities as plain values."""
    request = jobs_pb2.PredictRequest(model_id="m")
    for row in rows:
        request.rows.add().update({name: float(value) for name, value in row.items()})
    result = prediction.predict(model, record, request)
    return (
        [json_format.MessageToDict(value) for value in result.predictions],
        [json_format.MessageToDict(value) for value in result.classes],
        [list(row.values) for row in result.probabilities],
    )


def _fit(frame: pd.DataFrame, **fields: object) -> training.Trained:
    request = jobs_pb2.TrainRequest(**fields)  # type: ignore[arg-type]
    plan = jobs.plan(request, _schema(frame))
    return training.fit(frame, plan, lambda stage, fraction: STAGES.append((stage, fraction)))


def test_task_is_inferred_from_the_target() -> None:
    assert training.infer_task(pd.Series([1.5, 2.0, 3.25])) == "regression"
    assert training.infer_task(pd.Series([0, 1, 2, 1])) == "classification"
    assert training.infer_task(pd.Series(range(100))) == "regression"
    assert training.infer_task(pd.Series(["a", "b"])) == "classification"


def test_plan_defaults_features_to_every_other_column() -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"], "y": [0.5, 1.5]})
    plan = jobs.plan(jobs_pb2.TrainRequest(target="y"), _schema(frame))
    assert plan.features == ("a", "b")
    assert plan.task == "regression"
    assert (plan.test_size, plan.seed) == (0.2, 42)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"target": ""}, "target"),
        ({"target": "y", "features": ["a", "zzz"]}, "features[1]"),
        ({"target": "y", "features": ["y"]}, "features[0]"),
        ({"target": "y", "features": ["a", "a"]}, "features"),
        ({"target": "y", "test_size": 0.0}, "test_size"),
        ({"target": "y", "random_seed": -5}, "random_seed"),
        ({"target": "b", "task": jobs_pb2.TASK_REGRESSION}, "task"),
    ],
)
def test_plan_refuses_bad_requests_naming_the_field(fields: dict[str, object], field: str) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"], "y": [0.5, 1.5]})
    with pytest.raises(InvalidField) as excinfo:
        jobs.plan(jobs_pb2.TrainRequest(**fields), _schema(frame))  # type: ignore[arg-type]
    assert excinfo.value.field == field


def test_classification_metrics_and_classes() -> None:
    frame = load_iris(as_frame=True).frame
    trained = _fit(frame, target="target", estimator="logistic_regression")
    assert trained.task == "classification"
    assert trained.classes == [0, 1, 2]
    assert set(trained.metrics) == {"accuracy", "f1_macro", "roc_auc", "log_loss"}
    assert trained.metrics["accuracy"] > 0.9
    assert trained.train_rows == 120 and trained.test_rows == 30


def test_roc_auc_is_left_out_where_undefined() -> None:
    # Classes the holdout lacks make ROC AUC undefined; the other metrics are still reported.
    rows = [
        {"x": float(i), "label": "rare" if i == 0 else ("a" if i % 2 else "b")} for i in range(40)
    ]
    frame = pd.DataFrame(rows)
    trained = _fit(frame, target="label", random_seed=3)
    assert "accuracy" in trained.metrics
    assert "roc_auc" not in trained.metrics


def test_missing_values_and_single_class_fail_with_reasons() -> None:
    with pytest.raises(InvalidField, match="missing values"):
        _fit(
            pd.DataFrame({"x": [1.0, None, 3.0, 4.0, 5.0], "y": [1.0, 2.0, 3.0, 4.0, 5.0]}),
            target="y",
        )
    with pytest.raises(FailedPrecondition, match="two classes"):
        _fit(pd.DataFrame({"x": [1, 2, 3, 4, 5], "y": ["a"] * 5}), target="y")


def _with_blanks(rows: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=rows)
    frame = pd.DataFrame(
        {
            "x": np.where(np.arange(rows) % 5 == 0, np.nan, x),
            "colour": [None if i % 7 == 0 else "red" if v > 0 else "blue" for i, v in enumerate(x)],
            "y": 2 * x + rng.normal(scale=0.1, size=rows),
        }
    )
    return frame


def test_hist_gradient_boosting_trains_on_columns_with_blanks() -> None:
    frame = _with_blanks()
    trained = _fit(frame, target="y", estimator="hist_gradient_boosting")
    assert trained.metrics["r2"] > 0.5
    assert trained.train_rows + trained.test_rows == len(frame)


@pytest.mark.parametrize("estimator", ["random_forest", "linear", "gradient_boosting"])
def test_other_estimators_refuse_blanks_naming_the_columns_and_who_can(estimator: str) -> None:
    with pytest.raises(InvalidField, match="missing values") as refused:
        _fit(_with_blanks(), target="y", estimator=estimator)
    assert refused.value.field == "features"
    assert (
        "x, colour" in refused.value.message and "hist_gradient_boosting" in refused.value.message
    )


def test_blanks_in_the_target_never_train() -> None:
    frame = _with_blanks()
    frame.loc[3, "y"] = np.nan
    with pytest.raises(InvalidField, match="column y has missing values") as refused:
        _fit(frame, target="y", estimator="hist_gradient_boosting")
    assert refused.value.field == "target"


def _record(*features: tuple[str, str]) -> models_pb2.Model:
    record = models_pb2.Model()
    for name, dtype in features:
        record.features.add(name=name, dtype=dtype)
    return record


@pytest.mark.parametrize(
    ("rows", "field"),
    [
        ([], "rows"),
        ([{"n": 1.0, "s": "a", "b": True}, {"n": 1.0, "s": "a"}], "rows[1].b"),
        ([{"n": "1", "s": "a", "b": True}], "rows[0].n"),
        ([{"n": True, "s": "a", "b": True}], "rows[0].n"),
        ([{"n": float("nan"), "s": "a", "b": True}], "rows[0].n"),
        ([{"n": 1.0, "s": "a", "b": True}, {"n": float("-inf"), "s": "a", "b": True}], "rows[1].n"),
        ([{"n": 1.0, "s": 3.0, "b": True}], "rows[0].s"),
        ([{"n": 1.0, "s": "a", "b": 1.0}], "rows[0].b"),
    ],
)
def test_row_checks_name_row_and_feature(rows: list[dict[str, object]], field: str) -> None:
    record = _record(("n", "numeric"), ("s", "string"), ("b", "boolean"))
    with pytest.raises(InvalidField) as excinfo:
        check_rows(rows, record)
    assert excinfo.value.field == field


def test_predictions_keep_row_order() -> None:
    frame = pd.DataFrame({"x": [float(i) for i in range(50)], "y": [2.0 * i for i in range(50)]})
    trained = _fit(frame, target="y", estimator="linear")
    record = _record(("x", "numeric"))
    predicted, classes, probabilities = _predict(
        trained.estimator, record, [{"x": 3.0}, {"x": 1.0}, {"x": 2.0}]
    )
    assert predicted == pytest.approx([6.0, 2.0, 4.0])
    assert classes == [] and probabilities == []


@pytest.mark.parametrize("name", ["random_forest", "extra_trees"])
@pytest.mark.parametrize("dataset", ["diabetes", "iris", "breast_cancer"])
def test_forest_predictions_match_scikit_learn_exactly(name: str, dataset: str) -> None:
    from sklearn import datasets as sk

    frame = getattr(sk, f"load_{dataset}")(as_frame=True).frame
    trained = _fit(frame, target="target", estimator=name)
    record = _record(*((str(c), "numeric") for c in frame.columns if c != "target"))
    rows = frame.drop(columns="target").iloc[:40].to_dict("records")
    predicted, _, probabilities = _predict(trained.estimator, record, rows)
    X = frame.drop(columns="target").iloc[:40]
    assert predicted == list(trained.estimator.predict(X))
    if trained.task == "classification":
        expected = trained.estimator.predict_proba(X)
        assert np.allclose(probabilities, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["random_forest", "extra_trees"])
def test_deep_forests_agree_with_scikit_learn_at_the_thresholds(name: str) -> None:
    from sklearn.datasets import load_wine

    from workers.estimators import build

    X, y = load_wine(return_X_y=True, as_frame=True)
    for task, target in (("classification", y), ("regression", X["alcohol"])):
        features = X.drop(columns="alcohol") if task == "regression" else X
        model, _ = build(name, task, {"max_depth": None, "n_estimators": 30}, 7)
        model.fit(features, target)
        # Rows sitting exactly on split thresholds, where <= versus < would differ.
        tree = model.estimators_[0].tree_
        rows = features.iloc[:20].copy()
        for i, (f, t) in enumerate(zip(tree.feature[:20], tree.threshold[:20], strict=True)):
            if f >= 0:
                rows.iloc[i, f] = float(np.float32(t))
        record = _record(*((str(c), "numeric") for c in features.columns))
        predicted, _, probabilities = _predict(model, record, rows.to_dict("records"))
        X32 = rows.astype(np.float32)
        assert predicted == list(model.predict(X32))
        if task == "classification":
            assert np.allclose(probabilities, model.predict_proba(X32), rtol=0, atol=1e-12)


def test_holdout_labels_unseen_in_training_leave_out_probability_metrics() -> None:
    # "c" appears only once: with this seed it lands in the holdout, never in training.
    labels = ["a", "b"] * 10 + ["c"]
    frame = pd.DataFrame({"x": [float(i % 7) for i in range(21)], "y": labels})
    trained = _fit(frame, target="y", random_seed=0, test_size=0.3)
    assert "accuracy" in trained.metrics
    assert "log_loss" not in trained.metrics


@pytest.mark.parametrize("name", ["random_forest", "extra_trees"])
@pytest.mark.parametrize("dataset", ["diabetes", "iris"])
def test_forest_importances_are_scikit_learns_exactly(name: str, dataset: str) -> None:
    from sklearn import datasets as sk

    from workers.importances import feature_importances

    frame = getattr(sk, f"load_{dataset}")(as_frame=True).frame
    trained = _fit(frame, target="target", estimator=name)
    features = [str(c) for c in frame.columns if c != "target"]
    expected = trained.estimator.feature_importances_
    assert feature_importances(trained.estimator, features) == {
        name: float(value) for name, value in zip(features, expected, strict=True)
    }
    # Trees that never split (a constant target) leave every importance at zero.
    constant = frame.assign(target=1.0)
    stumps = _fit(constant, target="target", estimator=name, task=jobs_pb2.TASK_REGRESSION)
    assert feature_importances(stumps.estimator, features) == dict.fromkeys(features, 0.0)


@pytest.mark.parametrize("dataset", ["diabetes", "iris", "breast_cancer"])
def test_holdout_metrics_are_those_of_scikit_learns_predictions(dataset: str) -> None:
    from sklearn import datasets as sk
    from sklearn import metrics as sk_metrics

    frame = getattr(sk, f"load_{dataset}")(as_frame=True).frame
    trained = _fit(frame, target="target")
    model = trained.estimator
    X, y = frame.drop(columns="target").iloc[-90:], frame["target"].iloc[-90:]
    scores = training.metrics_for(model, trained.task, X, y)
    if trained.task == "regression":
        assert scores["rmse"] == float(np.sqrt(sk_metrics.mean_squared_error(y, model.predict(X))))
        assert scores["r2"] == float(sk_metrics.r2_score(y, model.predict(X)))
    else:
        assert scores["accuracy"] == float(sk_metrics.accuracy_score(y, model.predict(X)))
        expected = sk_metrics.log_loss(y, model.predict_proba(X), labels=model.classes_)
        assert scores["log_loss"] == pytest.approx(expected, rel=1e-9)


def test_identifier_warnings_are_found_once_per_frame_and_features() -> None:
    frame = pd.DataFrame({"id": range(30), "x": [1.5, 2.5] * 15, "y": [0.0, 1.0] * 15})
    dtypes = {"id": "numeric", "x": "numeric"}
    first = training._identifiers_of(frame, frame[["id", "x"]], dtypes)
    assert first == training.identifiers(frame[["id", "x"]], dtypes) and len(first) == 1
    first.clear()  # each caller gets a list of its own
    assert training._identifiers_of(frame, frame[["id", "x"]], dtypes) == training.identifiers(
        frame[["id", "x"]], dtypes
    )
    other = frame.assign(id=[1, 2] * 15)  # another frame: found afresh, not taken from the first
    assert training._identifiers_of(other, other[["id", "x"]], dtypes) == []


def test_a_second_fit_on_the_same_frame_describes_the_same_reference() -> None:
    from storage.datasets import builtin_frame

    frame, _ = builtin_frame("diabetes")
    request = jobs_pb2.TrainRequest(dataset_id="diabetes", target="target")
    schema = datasets_pb2.Dataset(id="diabetes")
    for name in frame.columns:
        schema.columns.add(name=name, dtype="numeric")
    plan = jobs.plan(request, schema)
    first = training.fit(frame, plan, lambda stage, share: None)
    again = training.fit(frame, plan, lambda stage, share: None)
    fresh = training.fit(frame.copy(), plan, lambda stage, share: None)
    assert first.reference and again.reference == first.reference == fresh.reference
    assert again.warnings == first.warnings == fresh.warnings
