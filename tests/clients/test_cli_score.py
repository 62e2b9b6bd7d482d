"""``mlgate predict MODEL --csv``: batch scoring through ModelInfer, as a real process."""

from __future__ import annotations

import csv
from pathlib import Path

import grpc
import numpy as np
import pytest
from sklearn.datasets import load_iris

from mlgate.v1 import jobs_pb2
from tests.support.gateway_calls import DIABETES_FEATURES, events_of, jobs, rows, trained_model
from tests.support.oip import seed_forest
from tests.support.serving import clean_env, run_mlgate


@pytest.fixture(scope="module")
def forest():
    return seed_forest()


def _read(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def test_a_csv_is_scored_in_chunks_one_prediction_per_row(
    embedded_gateway: str, tmp_path: Path, forest
) -> None:
    with grpc.insecure_channel(embedded_gateway) as channel:
        model_id = trained_model(channel)
    X = np.random.default_rng(5).normal(0.0, 0.05, (2_500, len(DIABETES_FEATURES)))
    source = tmp_path / "rows.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        # Columns in another order than the model's, plus one the model does not take.
        writer.writerow(["id", *reversed(DIABETES_FEATURES)])
        writer.writerows([i, *map(repr, row[::-1].tolist())] for i, row in enumerate(X))
    out = tmp_path / "predictions.csv"
    env = clean_env(MLGATE_ADDRESS=embedded_gateway)
    done = run_mlgate(
        "predict", model_id, "--csv", str(source), "--out", str(out), "--chunk-rows", "700", env=env
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 2,500 predictions" in done.stderr
    header, *lines = _read(out)
    assert header == ["predict"]
    got = np.array([float(line[0]) for line in lines])
    np.testing.assert_array_equal(got, forest.predict(X))


def test_a_classifier_gets_labels_and_probabilities_on_stdout(
    embedded_gateway: str, tmp_path: Path
) -> None:
    with grpc.insecure_channel(embedded_gateway) as channel:
        model_id = trained_model(channel, jobs_pb2.TrainRequest(dataset_id="iris", target="target"))
        iris = load_iris(as_frame=True).frame.drop(columns="target").head(3)
        expected = events_of(
            jobs(channel).Predict(
                jobs_pb2.PredictRequest(model_id=model_id, rows=rows(*iris.to_dict("records")))
            )
        )[-1].predict_result
    source = tmp_path / "flowers.csv"
    iris.to_csv(source, index=False)
    done = run_mlgate(
        "predict", model_id, "--csv", str(source), env=clean_env(MLGATE_ADDRESS=embedded_gateway)
    )
    assert done.returncode == 0, done.stderr
    header, *lines = list(csv.reader(done.stdout.splitlines()))
    assert header == ["predict"] + [f"proba_{c.number_value:g}" for c in expected.classes]
    assert [int(line[0]) for line in lines] == [p.number_value for p in expected.predictions]
    assert [[float(v) for v in line[1:]] for line in lines] == [
        list(p.values) for p in expected.probabilities
    ]


def test_a_missing_column_and_a_bad_value_say_where(embedded_gateway: str, tmp_path: Path) -> None:
    with grpc.insecure_channel(embedded_gateway) as channel:
        model_id = trained_model(channel)
    env = clean_env(MLGATE_ADDRESS=embedded_gateway)
    short = tmp_path / "short.csv"
    short.write_text(",".join(DIABETES_FEATURES[:-1]) + "\n" + ",".join(["0.1"] * 8) + "\n")
    done = run_mlgate("predict", model_id, "--csv", str(short), env=env)
    assert done.returncode == 2
    assert "inputs ('s6'): is missing" in done.stderr and "takes no blanks" in done.stderr
    gap = tmp_path / "gap.csv"
    values = [["0.1"] * 9 for _ in range(4)]
    values[2][1] = ""  # line 4 of the file: an empty bmi
    gap.write_text("\n".join([",".join(DIABETES_FEATURES), *(",".join(v) for v in values)]) + "\n")
    done = run_mlgate("predict", model_id, "--csv", str(gap), env=env)
    assert done.returncode != 0
    # Named by the file's line, not the row's place in its chunk.
    assert "lines 2-5: inputs[1] ('bmi'): line 4 is blank (NaN)" in done.stderr, done.stderr
