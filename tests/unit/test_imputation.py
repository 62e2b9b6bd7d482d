"""Issue 23, point 1: blanks filled as scikit-learn's SimpleImputer fills them (TrainRequest.impute).

A model trained with ``impute`` predicts as ``make_pipeline(SimpleImputer(...), estimator)`` fitted
on the same training rows, to the last bit, whether the rows come as rows (null, a key left out),
columns (NaN) or ModelInfer tensors; its record holds the imputer's statistics as data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_diabetes, load_iris
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from mlgate import jobs
from mlgate.errors import InvalidField
from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.v1 import datasets_pb2, jobs_pb2, models_pb2
from storage.datasets import dtype_name
from storage.errors import IntegrityError
from tests.support.houses import FEATURES, house_csv, read_back, reference_model
from workers import fitting, prediction, training
from workers.evaluation import evaluate
from workers.imputation import check_imputation, fill
from workers.messages import FitTask
from workers.tensors import decode

MODEL_ID = "mdl_" + "0" * 32


def _schema(frame: pd.DataFrame) -> datasets_pb2.Dataset:
    schema = datasets_pb2.Dataset(id="data", rows=len(frame))
    for name, dtype in frame.dtypes.items():
        schema.columns.add(name=str(name), dtype=dtype_name(dtype))
    return schema


def _trained(frame: pd.DataFrame, **fields: Any) -> tuple[training.Trained, models_pb2.Model]:
    plan = jobs.plan(jobs_pb2.TrainRequest(**fields), _schema(frame))
    trained = training.fit(frame, plan, lambda stage, fraction: None)
    task = FitTask("job", MODEL_ID, plan, "", 1, 0)
    return trained, fitting._record(task, trained, "digest")


def _blanked(frame: pd.DataFrame, columns: list[str], share: float = 0.15) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frame = frame.copy()
    for name in columns:
        frame.loc[rng.random(len(frame)) < share, name] = np.nan
    return frame


def _rows_request(X: pd.DataFrame) -> jobs_pb2.PredictRequest:
    """Blanks as JSON null, or as keys left out (every other blank)."""
    request = jobs_pb2.PredictRequest(model_id=MODEL_ID)
    left_out = 0
    for row in X.to_dict("records"):
        values: dict[str, Any] = {}
        for name, value in row.items():
            if isinstance(value, float) and np.isnan(value):
                left_out += 1
                if left_out % 2:
                    continue
                values[name] = None
            else:
                values[name] = value
        request.rows.add().update(values)
    return request


def _columns_request(X: pd.DataFrame) -> jobs_pb2.PredictRequest:
    request = jobs_pb2.PredictRequest(model_id=MODEL_ID)
    for name in X.columns:
        request.columns.add(name=name).doubles.values.extend(X[name].tolist())
    return request


def _tensor_outputs(model: Any, record: models_pb2.Model, X: pd.DataFrame) -> Any:
    """ModelInfer's way: one raw FP64 tensor per feature, NaN for a blank."""
    request = pb.ModelInferRequest(model_name=MODEL_ID)
    for name in X.columns:
        request.inputs.add(name=name, datatype="FP64", shape=[len(X)])
        request.raw_input_contents.append(X[name].to_numpy("<f8").tobytes())
    return evaluate(model, record, fill(decode(request, record), record))


def _numbers(result: jobs_pb2.PredictResult) -> list[Any]:
    return [v.number_value for v in result.predictions]


@pytest.mark.parametrize("impute", ["median", "mean", "most_frequent", "constant:-1.5"])
@pytest.mark.parametrize(
    "estimator", ["random_forest", "gradient_boosting", "hist_gradient_boosting", "ridge"]
)
def test_a_regressor_predicts_as_scikit_learns_pipeline_on_every_path(
    impute: str, estimator: str
) -> None:
    frame = _blanked(load_diabetes(as_frame=True).frame, ["bmi", "bp", "s5"])
    trained, record = _trained(frame, target="target", estimator=estimator, impute=impute)
    strategy, _, value = impute.partition(":")
    imputer = SimpleImputer(strategy=strategy, fill_value=float(value) if value else None)
    X, y = frame.drop(columns="target"), frame["target"]
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=42)
    reference = make_pipeline(imputer, clone(trained.estimator)).fit(X_train.to_numpy(), y_train)
    # Rows one after another in memory, as requests hold them: a linear model's sums follow the
    # matrix's layout in their last bit (a DataFrame's columns would be summed otherwise).
    expected = reference.predict(np.ascontiguousarray(X_test.to_numpy()))
    assert record.imputation.strategy == impute
    assert [record.imputation.values[n].number_value for n in X.columns] == (
        reference[0].statistics_.tolist()
    )
    assert _numbers(prediction.predict(trained.estimator, record, _rows_request(X_test))) == (
        expected.tolist()
    )
    by_columns = prediction.predict(trained.estimator, record, _columns_request(X_test))
    assert _numbers(by_columns) == expected.tolist()
    assert list(by_columns.warnings) == []
    np.testing.assert_array_equal(_tensor_outputs(trained.estimator, record, X_test)[0], expected)


@pytest.mark.parametrize("estimator", ["random_forest", "logistic_regression"])
def test_a_classifier_gives_scikit_learns_labels_and_probabilities(estimator: str) -> None:
    frame = _blanked(load_iris(as_frame=True).frame, ["petal length (cm)", "sepal width (cm)"])
    trained, record = _trained(frame, target="target", estimator=estimator, impute="median")
    X, y = frame.drop(columns="target"), frame["target"]
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=42)
    reference = make_pipeline(SimpleImputer(strategy="median"), clone(trained.estimator))
    reference.fit(X_train.to_numpy(), y_train)
    result = prediction.predict(trained.estimator, record, _columns_request(X_test))
    rows = np.ascontiguousarray(X_test.to_numpy())
    assert _numbers(result) == reference.predict(rows).tolist()
    assert [list(p.values) for p in result.probabilities] == reference.predict_proba(rows).tolist()


def test_mixed_features_predict_as_imputers_inside_the_encoding(tmp_path: Path) -> None:
    frame = read_back(house_csv(tmp_path / "houses.csv"))
    trained, record = _trained(
        frame, target="price", impute="median", exclude=["id", "listing_note"]
    )
    assert [f.name for f in record.features] == FEATURES
    expected = reference_model(frame).predict(frame[FEATURES])
    request = _rows_request(frame[FEATURES].head(80))
    assert _numbers(prediction.predict(trained.estimator, record, request)) == (
        expected[:80].tolist()
    )
    fills = {name: value.WhichOneof("kind") for name, value in record.imputation.values.items()}
    assert fills == {
        "sqft": "number_value",
        "rooms": "number_value",
        "district": "string_value",
        "garage": "bool_value",
        "year": "number_value",
    }


def test_a_feature_without_any_value_to_learn_from_is_refused() -> None:
    frame = load_diabetes(as_frame=True).frame
    frame["empty"] = np.nan
    with pytest.raises(InvalidField) as refused:
        _trained(frame, target="target", impute="mean")
    assert refused.value.field == "impute"
    assert "feature empty has no value in the training rows" in refused.value.message
    assert "exclude empty" in refused.value.message


@pytest.mark.parametrize(
    ("impute", "message"),
    [
        ("middle", "'middle' is not one of median, mean, most_frequent or constant:VALUE"),
        ("median:3", "median takes no value; only constant:VALUE does"),
        ("constant", "constant needs a value"),
        (
            "constant:n/a",
            "constant:'n/a' cannot fill numeric feature 'x': it needs a finite number",
        ),
        ("constant:1e39", "constant:'1e39' cannot fill numeric feature 'x'"),
        ("constant:0", "constant:'0' cannot fill boolean feature 'b': it needs true or false"),
    ],
)
def test_an_impute_the_features_cannot_take_is_refused_naming_it(impute: str, message: str) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0], "b": [True, False], "s": ["a", "b"], "y": [1.0, 2.0]})
    with pytest.raises(InvalidField) as refused:
        jobs.plan(jobs_pb2.TrainRequest(target="y", impute=impute), _schema(frame))
    assert refused.value.field == "impute"
    assert refused.value.message.startswith(f"impute: {message}"), refused.value.message


def test_constant_fills_each_feature_with_the_value_read_as_its_type() -> None:
    frame = pd.DataFrame({"s": ["a", None] * 20, "b": [True, False] * 20, "y": np.arange(40.0)})
    _, record = _trained(frame, target="y", impute="constant:TRUE")
    values = record.imputation.values
    assert (values["s"].string_value, values["b"].bool_value) == ("TRUE", True)
    frame = pd.DataFrame({"x": [1.0, np.nan] * 20, "s": ["a", None] * 20, "y": np.arange(40.0)})
    _, record = _trained(frame, target="y", impute="constant:7")
    values = record.imputation.values
    assert (values["x"].number_value, values["s"].string_value) == (7.0, "7")


def test_a_manifest_whose_imputation_does_not_fit_its_features_is_not_loaded() -> None:
    frame = _blanked(load_diabetes(as_frame=True).frame, ["bmi"])
    _, record = _trained(frame, target="target", impute="median")
    check_imputation(record)
    for damage in ("missing", "text", "nan"):
        damaged = models_pb2.Model()
        damaged.CopyFrom(record)
        if damage == "missing":
            del damaged.imputation.values["bmi"]
        elif damage == "text":
            damaged.imputation.values["bmi"].string_value = "lots"
        else:
            damaged.imputation.values["bmi"].number_value = float("nan")
        with pytest.raises(IntegrityError, match="feature bmi"):
            check_imputation(damaged)
