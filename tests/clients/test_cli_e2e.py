"""The mlgate command line, run in-process against the real embedded system."""

from __future__ import annotations

import io
import json
import re
import sys

import pytest

from tests.support.cli_runner import cli_json
from tests.support.samples import DIABETES_FEATURES, DOC_ROW, HOUSES_CSV, IRIS_ROW

FEATURES = ",".join(DIABETES_FEATURES)


def test_train_and_predict_the_documented_row(mlgate) -> None:
    status, out, err = mlgate("train", "diabetes", "--target", "target", "--features", FEATURES)
    assert status == 0, err
    assert err == ""  # no progress bar when stderr is not a terminal
    summary = dict(line.split(":", 1) for line in out.splitlines())
    assert summary["job"].strip().startswith("job_")
    model_id = summary["model"].strip()
    assert re.fullmatch(r"mae=\S+  r2=\S+  rmse=\S+", summary["metrics"].strip())

    result = cli_json(mlgate, "predict", model_id, "--row", json.dumps(DOC_ROW))
    assert result["model_id"] == model_id
    assert result["predictions"] == [pytest.approx(208.6, abs=0.1)]
    assert result["classes"] == [] and result["probabilities"] == []

    status, out, _ = mlgate("predict", model_id, "--row", json.dumps(DOC_ROW))
    assert status == 0
    assert out.splitlines()[0].split() == ["row", "prediction"]
    assert out.splitlines()[1].split()[0] == "0"


def test_train_options_reach_the_model(mlgate) -> None:
    trained = cli_json(
        mlgate,
        "train", "diabetes", "--target", "target", "-f", "age,bmi", "-f", "bp",
        "--estimator", "gradient_boosting", "--param", "n_estimators=20",
        "--param", "loss=huber", "--test-size", "0.25", "--seed", "3",
    )  # fmt: skip
    assert set(trained) == {
        "job_id",
        "model_id",
        "metrics",
        "model_name",
        "model_version",
        "warnings",
    }
    assert (trained["model_name"], trained["model_version"], trained["warnings"]) == ("", 0, [])
    model = cli_json(mlgate, "models", "get", trained["model_id"])
    assert [f["name"] for f in model["features"]] == ["age", "bmi", "bp"]
    assert model["estimator"] == "gradient_boosting"
    assert model["params"]["n_estimators"] == 20 and model["params"]["loss"] == "huber"
    assert model["params"]["random_state"] == 3
    assert model["test_rows"] == 111


def test_classifier_rows_from_a_file_jsonl_and_stdin(mlgate, tmp_path, monkeypatch) -> None:
    model_id = cli_json(mlgate, "train", "iris", "--target", "target")["model_id"]
    listed = tmp_path / "rows.json"
    listed.write_text(json.dumps([IRIS_ROW, IRIS_ROW]))
    lines = tmp_path / "rows.jsonl"
    lines.write_text(f"{json.dumps(IRIS_ROW)}\n{json.dumps(IRIS_ROW)}\n")
    for path in (listed, lines):
        result = cli_json(mlgate, "predict", model_id, "--rows-file", str(path))
        assert result["predictions"] == [0, 0]
        assert result["classes"] == [0, 1, 2]
        assert len(result["probabilities"]) == 2
        columns = cli_json(mlgate, "predict", model_id, "--rows-file", str(path), "--columns")
        assert columns["probabilities"] == result["probabilities"]
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(IRIS_ROW)))
    status, out, _ = mlgate("predict", model_id, "-")
    assert status == 0
    header, row = out.splitlines()
    assert header.split() == ["row", "prediction", "p(0)", "p(1)", "p(2)"]
    assert row.split()[:2] == ["0", "0"]


def test_detach_then_watch_get_list_and_cancel(mlgate) -> None:
    status, out, _ = mlgate("train", "diabetes", "--target", "target", "--detach")
    assert status == 0
    job_id = out.strip()
    assert re.fullmatch(r"job_[0-9a-f]{32}", job_id)

    status, out, _ = mlgate("jobs", "watch", job_id)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["1", "queued"]
    assert lines[-1].split()[1] == "succeeded" and "model mdl_" in lines[-1]
    events = [
        json.loads(line) for line in mlgate("--json", "jobs", "watch", job_id)[1].splitlines()
    ]
    assert [e["seq"] for e in events] == [int(line.split()[0]) for line in lines]
    tail = mlgate("--json", "jobs", "watch", job_id, "--after-seq", "3")[1].splitlines()
    assert [json.loads(line)["seq"] for line in tail] == [e["seq"] for e in events if e["seq"] > 3]

    job = cli_json(mlgate, "jobs", "get", job_id)
    assert (job["id"], job["kind"], job["state"]) == (job_id, "train", "succeeded")
    status, out, _ = mlgate("jobs", "get", job_id)
    assert "state:     succeeded" in out and "dataset:   diabetes" in out

    cli_json(mlgate, "predict", job["model_id"], "--row", json.dumps({**DOC_ROW, "sex": 0.05}))
    assert [j["kind"] for j in cli_json(mlgate, "jobs", "list")] == ["predict", "train"]
    assert [j["id"] for j in cli_json(mlgate, "jobs", "list", "--kind", "train")] == [job_id]
    assert cli_json(mlgate, "jobs", "list", "--state", "running") == []
    assert len(cli_json(mlgate, "jobs", "list", "--limit", "1")) == 1
    status, out, _ = mlgate("jobs", "list")
    assert out.splitlines()[0].split()[:3] == ["ID", "KIND", "STATE"]
    assert len(out.splitlines()) == 3

    status, out, _ = mlgate("jobs", "cancel", job_id)
    assert (status, out.strip()) == (0, f"{job_id} had already ended: succeeded")


def test_cancel_a_queued_job(mlgate) -> None:
    slow = ["--param", "n_estimators=400", "--param", "max_depth=12"]
    mlgate("train", "diabetes", "--target", "target", "--detach", *slow)
    waiting = mlgate("train", "diabetes", "--target", "target", "--detach")[1].strip()
    status, out, _ = mlgate("jobs", "cancel", waiting)
    assert (status, out.strip()) == (0, f"{waiting} cancelled")
    status, out, err = mlgate("jobs", "watch", waiting)
    assert status == 1
    assert out.splitlines()[-1].split()[1] == "cancelled"
    assert err.strip() == f"error: CANCELLED: cancelled by request (job {waiting})"
    # A second cancel changes nothing, and says so rather than claiming it cancelled the job.
    status, out, _ = mlgate("jobs", "cancel", waiting)
    assert (status, out.strip()) == (0, f"{waiting} had already ended: cancelled")


def test_models_list_get_delete(mlgate) -> None:
    model_id = cli_json(mlgate, "train", "wine", "--target", "target")["model_id"]
    assert [m["id"] for m in cli_json(mlgate, "models", "list")] == [model_id]
    status, out, _ = mlgate("models", "list")
    assert model_id in out and "classification" in out
    status, out, _ = mlgate("models", "get", model_id)
    shown = {key: value.strip() for key, value in (line.split(":", 1) for line in out.splitlines())}
    assert (shown["task"], shown["classes"]) == ("classification", "0, 1, 2")
    assert mlgate("models", "delete", model_id)[:2] == (0, f"{model_id} deleted\n")
    status, _, err = mlgate("models", "get", model_id)
    assert status == 1
    assert err.startswith("error: NOT_FOUND: ")


def test_datasets_upload_list_get_and_train(mlgate, tmp_path) -> None:
    path = tmp_path / "houses.csv"
    path.write_text(HOUSES_CSV)
    status, out, err = mlgate("datasets", "upload", str(path))
    assert status == 0, err
    assert "id:      houses" in out and "colour" in out
    renamed = cli_json(mlgate, "datasets", "upload", str(path), "--id", "homes")
    assert (renamed["id"], renamed["rows"], renamed["builtin"]) == ("homes", 12, False)
    listed = {d["id"] for d in cli_json(mlgate, "datasets", "list")}
    assert {"homes", "houses", "diabetes", "iris"} <= listed
    assert cli_json(mlgate, "datasets", "get", "homes") == renamed
    status, out, _ = mlgate("datasets", "get", "iris")
    assert "builtin: yes" in out and "petal width (cm)" in out
    trained = cli_json(mlgate, "train", "homes", "--target", "price", "--task", "regression")
    row = json.dumps({"size": 20, "colour": "blue"})
    assert len(cli_json(mlgate, "predict", trained["model_id"], "--row", row)["predictions"]) == 1
    assert mlgate("datasets", "upload", str(tmp_path / "nope.csv"))[0] == 2


def test_errors_print_the_code_and_exit_by_it(mlgate) -> None:
    status, out, err = mlgate("train", "diabetes", "--target", "target", "--estimator", "magic")
    assert (status, out) == (2, "")
    assert err.startswith("error: INVALID_ARGUMENT: estimator: unknown estimator 'magic'")
    status, _, err = mlgate("train", "nowhere", "--target", "target")
    assert status == 1 and err.startswith("error: NOT_FOUND: ")
    status, _, err = mlgate("jobs", "get", "job-1")
    assert status == 2 and err.startswith("error: INVALID_ARGUMENT: job_id: ")

    status, _, err = mlgate("datasets", "upload", "/nonexistent/houses.csv")
    assert status == 2 and err.startswith("mlgate: error: cannot read /nonexistent/houses.csv")


def test_a_fit_past_its_time_limit_says_so(mlgate) -> None:
    endless = ["--param", "n_estimators=20000", "--param", "max_depth=null"]
    status, out, err = mlgate(
        "train", "diabetes", "--target", "target", "--time-limit", "1", *endless
    )
    assert (status, out) == (1, "")
    assert err.startswith(
        "error: DEADLINE_EXCEEDED: the fit took longer than its time limit of 1 s"
    )


def test_a_failed_job_prints_its_error_and_job(mlgate, tmp_path) -> None:
    path = tmp_path / "one-class.csv"
    path.write_text("x,label\n1,a\n2,a\n3,a\n4,a\n5,a\n")
    assert mlgate("datasets", "upload", str(path))[0] == 0
    status, out, err = mlgate("train", "one-class", "--target", "label")
    assert (status, out) == (1, "")
    match = re.fullmatch(r"error: FAILED_PRECONDITION: (.+) \(job (job_[0-9a-f]{32})\)\n", err)
    assert match, err
    status, out, err2 = mlgate("jobs", "watch", match.group(2))
    assert status == 1
    assert out.splitlines()[-1].split()[1] == "failed"
    assert err2 == err


def test_datasets_upload_detects_the_delimiter_or_takes_it(mlgate, tmp_path) -> None:
    path = tmp_path / "houses.csv"
    path.write_text(HOUSES_CSV.replace(",", ";"))
    uploaded = cli_json(mlgate, "datasets", "upload", str(path))
    assert (uploaded["id"], uploaded["rows"], len(uploaded["columns"])) == ("houses", 12, 3)
    status, _, err = mlgate("datasets", "upload", str(path), "--id", "tabbed", "--delimiter", "tab")
    assert status != 0
    assert "INVALID_ARGUMENT" in err and "the file looks semicolon (';')-separated" in err


def test_predict_prints_the_results_warnings_on_stderr(mlgate, tmp_path) -> None:
    path = tmp_path / "houses.csv"
    path.write_text(HOUSES_CSV)
    assert mlgate("datasets", "upload", str(path))[0] == 0
    trained = cli_json(mlgate, "train", "houses", "--target", "price", "--estimator", "ridge")
    row = json.dumps({"size": 20, "colour": "purple"})
    status, out, err = mlgate("--json", "predict", trained["model_id"], "--row", row)
    assert status == 0, err
    assert "warning: feature colour: unseen category 'purple' (1 row) ignored" in err
    assert json.loads(out)["warnings"] == [err.split("warning: ", 1)[1].strip()]


def test_with_json_errors_are_one_json_object_on_stderr(mlgate, tmp_path) -> None:
    status, out, err = mlgate("--json", "train", "diabetes", "--target", "nope")
    assert (status, out) == (2, "")
    error = json.loads(err)["error"]
    assert (error["code"], error["field"]) == ("INVALID_ARGUMENT", "target")
    assert error["message"].startswith("target: 'nope' is not a column of diabetes")
    status, _, err = mlgate("jobs", "get", "job_" + "0" * 32, "--json")
    assert status == 1
    assert json.loads(err)["error"]["code"] == "NOT_FOUND"

    path = tmp_path / "one-class.csv"
    path.write_text("x,label\n1,a\n2,a\n3,a\n4,a\n5,a\n")
    assert mlgate("datasets", "upload", str(path))[0] == 0
    status, out, err = mlgate("--json", "train", "one-class", "--target", "label")
    assert (status, out) == (1, "")
    error = json.loads(err)["error"]
    assert error["code"] == "FAILED_PRECONDITION" and error["field"] is None
    assert re.fullmatch(r"job_[0-9a-f]{32}", error["job_id"])


def test_messages_speak_json_null_not_python_none(mlgate) -> None:
    """Values come in as JSON, so messages and listings name them as JSON does."""
    status, _, err = mlgate(
        "train", "diabetes", "--target", "target", "--param", "n_estimators=null"
    )
    assert status == 2
    assert "got null instead" in err and "None" not in err
    status, _, err = mlgate("train", "diabetes", "--target", "target", "--param", "max_depth=0")
    assert status == 2
    assert "[1, inf) or null; got 0 instead" in err and "None" not in err

    model_id = cli_json(mlgate, "train", "diabetes", "--target", "target")["model_id"]
    status, _, err = mlgate("predict", model_id, "--row", json.dumps({**DOC_ROW, "sex": None}))
    assert status == 2
    assert (
        err.strip() == "error: INVALID_ARGUMENT: rows[0].sex: is blank (null), and this model "
        "(random_forest, trained without impute) takes no blanks: send a value, or train with "
        "impute (mlgate train --impute median) or an estimator that handles blanks "
        "(hist_gradient_boosting)"
    )
    status, out, _ = mlgate("models", "get", model_id)
    assert status == 0
    params = out.split("params:", 1)[1].splitlines()[0]
    assert "max_leaf_nodes=null" in params and "bootstrap=true" in params
    assert "criterion=squared_error" in params and "None" not in params
    # Integer hyperparameters read as integers, in text and in JSON; a float stays a float.
    assert "max_depth=3," in params and "n_estimators=100," in params
    assert "max_features=1.0" in params
    model = cli_json(mlgate, "models", "get", model_id)
    assert model["params"]["max_depth"] == 3 and isinstance(model["params"]["max_depth"], int)
    assert isinstance(model["params"]["random_state"], int)
