"""Issue 23, points 1 to 4, as the user met them: a house-price CSV of their own (numbers,
categories, booleans, blanks, quoted commas, an id and a note) through the CLI and gRPC of one
embedded system.

Before: random_forest refused the blanks with no way forward; hist_gradient_boosting trained on
them but no prediction path took a blank; an id trained silently; Predict refused a column that
--csv and ModelInfer ignored; a blank string cell crashed --csv; positions counted within a chunk;
a Parquet file was INTERNAL. Now every path takes the same inputs and gives the same numbers:
scikit-learn's own, bit for bit."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor

from mlgate.oip import grpc_predict_v2_pb2_grpc as pb_grpc
from mlgate.v1 import datasets_pb2, jobs_pb2
from tests.support.gateway_calls import datasets, events_of, jobs, refused
from tests.support.houses import (
    FEATURES,
    columns_of,
    house_csv,
    infer_request,
    read_back,
    reference_model,
    row_structs,
)
from tests.support.oip import fp64_output
from tests.support.serving import clean_env, run_mlgate
from tests.support.system import RunningGateway, gateway_settings, running_gateway


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    running = running_gateway(gateway_settings(tmp_path_factory.mktemp("data")))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("files")


def _mlgate(system: RunningGateway, *argv: str, cwd: Path | None = None) -> Any:
    return run_mlgate(*argv, env=clean_env(MLGATE_ADDRESS=system.address), cwd=cwd)


@pytest.fixture(scope="module")
def houses_csv(system: RunningGateway, files: Path) -> Path:
    path = house_csv(files / "houses.csv")
    done = _mlgate(system, "datasets", "upload", str(path))
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture(scope="module")
def imputed(system: RunningGateway, houses_csv: Path) -> dict[str, Any]:
    """``mlgate train houses --impute median --exclude id,listing_note --name houses``."""
    done = _mlgate(
        system,
        *("train", "houses", "--target", "price", "--impute", "median"),
        *("--exclude", "id,listing_note", "--name", "houses", "--json"),
    )
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr  # the id is out
    trained: dict[str, Any] = json.loads(done.stdout)
    return trained


def _predict(channel: grpc.Channel, request: jobs_pb2.PredictRequest) -> jobs_pb2.PredictResult:
    return events_of(jobs(channel).Predict(request, timeout=60))[-1].predict_result


def _numbers(result: jobs_pb2.PredictResult) -> list[float]:
    return [value.number_value for value in result.predictions]


def test_blanks_are_refused_naming_the_way_forward(system, houses_csv) -> None:
    done = _mlgate(system, "train", "houses", "--target", "price")
    assert done.returncode == 2
    assert "columns with missing values cannot be used by random_forest: sqft, district" in (
        done.stderr
    )
    assert "mlgate train --impute median" in done.stderr


def test_an_identifier_trains_with_a_warning(system, houses_csv) -> None:
    done = _mlgate(system, "train", "houses", "--target", "price", "--impute", "median")
    assert done.returncode == 0, done.stderr
    assert "warning: feature id has a different value in every row (600 of 600)" in done.stderr
    assert "mlgate train --exclude id" in done.stderr
    assert "warning: feature listing_note has a different value" in done.stderr
    done = _mlgate(system, "train", "houses", "--target", "price", "--impute", "mean", "--json")
    warnings = json.loads(done.stdout)["warnings"]
    assert [warning.split()[1] for warning in warnings] == ["id", "listing_note"]


def test_the_imputed_model_predicts_as_scikit_learn_on_every_path(
    system, houses_csv, imputed, files
) -> None:
    frame = read_back(houses_csv)
    reference = reference_model(frame)
    expected = reference.predict(frame[FEATURES]).tolist()
    # The record reports the imputer's statistics: scikit-learn's, feature by feature.
    model = json.loads(_mlgate(system, "models", "get", "houses/1", "--json").stdout)
    encode = reference.named_steps["encode"]
    learned = [
        *encode.named_transformers_["categorical"][0].statistics_.tolist(),
        *encode.named_transformers_["remainder"].statistics_.tolist(),
    ]
    assert model["impute"] == "median"
    assert [model["imputed"][name] for name in ("district", "garage", "sqft", "rooms", "year")] == (
        learned
    )
    with grpc.insecure_channel(system.address) as channel:
        by_rows = _predict(
            channel, jobs_pb2.PredictRequest(model_id="houses", rows=row_structs(frame[FEATURES]))
        )
        by_columns = _predict(
            channel, jobs_pb2.PredictRequest(model_id="houses", columns=columns_of(frame[FEATURES]))
        )
        infer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        by_tensors = fp64_output(infer(infer_request("houses", frame[FEATURES])))
    assert _numbers(by_rows) == expected and list(by_rows.warnings) == []
    assert _numbers(by_columns) == expected
    assert by_tensors.tolist() == expected
    out = files / "predictions.csv"
    done = _mlgate(
        system, "predict", "houses", "--csv", str(houses_csv), "--keep", "id", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    with out.open(newline="") as handle:
        header, *lines = list(csv.reader(handle))
    assert header == ["id", "predict"]
    assert [line[0] for line in lines] == [str(i) for i in frame["id"]]
    assert [float(line[1]) for line in lines] == expected
    assert f"wrote 600 predictions of houses/1 ({imputed['model_id']})" in done.stderr
    assert "warning: ignored listing_note, price: not features of this model" in done.stderr


def test_hist_gradient_boosting_takes_blanks_as_they_are_on_every_path(
    system, houses_csv, files
) -> None:
    done = _mlgate(
        system,
        *("train", "houses", "--target", "price", "--estimator", "hist_gradient_boosting"),
        *("--exclude", "id,listing_note", "--name", "houses-hgb"),
    )
    assert done.returncode == 0, done.stderr
    frame = read_back(houses_csv)
    reference = reference_model(frame, HistGradientBoostingRegressor(random_state=42), impute=False)
    expected = reference.predict(frame[FEATURES]).tolist()
    with grpc.insecure_channel(system.address) as channel:
        by_rows = _predict(
            channel,
            jobs_pb2.PredictRequest(model_id="houses-hgb", rows=row_structs(frame[FEATURES])),
        )
        infer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        by_tensors = fp64_output(infer(infer_request("houses-hgb", frame[FEATURES])))
    assert _numbers(by_rows) == expected
    assert by_tensors.tolist() == expected
    out = files / "hgb.csv"
    done = _mlgate(system, "predict", "houses-hgb", "--csv", str(houses_csv), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert [float(line[0]) for line in list(csv.reader(out.open()))[1:]] == expected


def test_callers_of_an_alias_send_the_same_rows_when_it_moves_to_fewer_columns(
    system, houses_csv, imputed, files
) -> None:
    done = _mlgate(
        system,
        *("train", "houses", "--target", "price", "--impute", "median"),
        *("--exclude", "id,listing_note,year", "--name", "houses"),
    )
    assert done.returncode == 0, done.stderr
    frame = read_back(houses_csv).head(5)
    sent = frame[[*FEATURES, "id"]]
    for version in ("1", "2"):
        assert _mlgate(system, "models", "alias", "houses", "production", version).returncode == 0
        with grpc.insecure_channel(system.address) as channel:
            result = _predict(
                channel,
                jobs_pb2.PredictRequest(model_id="houses@production", rows=row_structs(sent)),
            )
            infer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer
            answer = infer(infer_request("houses@production", sent))
        ignored = "id" if version == "1" else "id, year"
        told = f"ignored {ignored}: not"
        assert len(result.predictions) == 5 and result.warnings[0].startswith(told)
        assert json.loads(answer.parameters["warnings"].string_param)[0].startswith(told)
        assert fp64_output(answer).tolist() == _numbers(result)
    source = files / "five.csv"
    sent.to_csv(source, index=False)
    done = _mlgate(system, "predict", "houses@production", "--csv", str(source), "--keep", "id")
    assert done.returncode == 0, done.stderr
    assert "warning: ignored year: not features of this model" in done.stderr
    assert "scored 5 rows with houses/2 (" in done.stderr
    assert done.stdout.splitlines()[0] == "id,predict"


def test_a_blank_cell_never_crashes_predict_csv(system, houses_csv, imputed, files) -> None:
    # A model trained on data without blanks, and a file with blank cells (lines 3 and 5).
    clean = read_back(houses_csv).dropna()
    plain = files / "plain.csv"
    clean.to_csv(plain, index=False)
    assert _mlgate(system, "datasets", "upload", str(plain), "--id", "plain").returncode == 0
    done = _mlgate(
        system,
        *("train", "plain", "--target", "price", "--exclude", "id,listing_note"),
        *("--name", "plain"),
    )
    assert done.returncode == 0, done.stderr
    with_blanks = files / "blanks.csv"
    rows = clean.head(4).copy()
    rows["district"] = rows["district"].astype(object)
    rows.iloc[1, rows.columns.get_loc("district")] = None
    rows["garage"] = rows["garage"].astype(object)
    rows.iloc[3, rows.columns.get_loc("garage")] = None
    rows.to_csv(with_blanks, index=False)
    done = _mlgate(system, "predict", "plain", "--csv", str(with_blanks))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "lines 2-5: inputs[2] ('district'): line 3 is blank, and this model" in done.stderr
    # The imputed model fills them: every line gets a prediction.
    done = _mlgate(system, "predict", "houses/1", "--csv", str(with_blanks), "--chunk-rows", "2")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 5


def test_a_file_that_is_not_csv_is_named_for_what_it_is(system, imputed, files) -> None:
    parquet = files / "houses.parquet"
    parquet.write_bytes(b"PAR1\x15\x04\x15\xa0\x01\x15\xa0\x01L\x15\x04\x15\x00\x12\x00\x00" * 9)
    # Parquet uploads are read now (docs/datasets.md): this broken one is refused as Parquet.
    done = _mlgate(system, "datasets", "upload", str(parquet), "--id", "pq")
    assert done.returncode == 2
    assert "the file is not a readable Parquet file" in done.stderr
    with grpc.insecure_channel(system.address) as channel:
        first = datasets_pb2.UploadDatasetRequest(
            dataset_id="pq", chunk=parquet.read_bytes(), format="csv"
        )
        code, details = refused(lambda: datasets(channel).UploadDataset(iter([first])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Parquet" in details
    done = _mlgate(system, "predict", "houses", "--csv", str(parquet))
    assert done.returncode == 2 and "this looks like a Parquet file" in done.stderr
    # Old Mac line ends are lines: such a file scores as any other.
    old_mac = files / "old-mac.csv"
    old_mac.write_bytes(b"sqft,rooms,district,garage,year\r1500,3,north,true,1990\r")
    done = _mlgate(system, "predict", "houses", "--csv", str(old_mac))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 2
