"""Batch scoring (JobService.Score) on the embedded system: the output equals scikit-learn's
predictions row for row, with the kept columns and a classifier's probability columns, in CSV
and Parquet; progress in rows; a cancelled job leaves no dataset and no parts; bad requests are
refused naming what to change."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlgate.v1 import jobs_pb2
from mlgate_client import MLGateClient
from mlgate_client.errors import JobCancelled, MLGateError
from tests.support.authed import start_authed
from tests.support.samples import DIABETES_FEATURES
from tests.support.scoring import diabetes_rows, read_dataset, sklearn_model
from tests.support.system import RunningGateway
from tests.support.waiting import wait_for


@pytest.fixture
def client(embedded: RunningGateway) -> Iterator[MLGateClient]:
    with MLGateClient(embedded.address, timeout=60) as connected:
        yield connected


def _upload(client: MLGateClient, tmp_path: Path, dataset_id: str, frame: pd.DataFrame) -> None:
    path = tmp_path / f"{dataset_id}.csv"
    frame.to_csv(path, index=False)
    client.upload_dataset(dataset_id, path)


def test_output_equals_scikit_learns_predictions_with_kept_columns(
    client: MLGateClient, tmp_path: Path
) -> None:
    frame = diabetes_rows(5_000)
    _upload(client, tmp_path, "many", frame)
    trained = client.train("diabetes", "target", features=DIABETES_FEATURES, model_name="dia")
    seen: list[jobs_pb2.JobEvent] = []
    result = client.score(
        "dia", "many", "many-scored", keep_columns=["id"], shard_rows=1_200, on_event=seen.append
    )
    assert (result.rows, result.format, result.columns) == (5_000, "csv", ("id", "prediction"))
    assert (result.model_id, result.model_name, result.model_version) == (
        trained.model_id,
        "dia",
        1,
    )
    progress = [e.score_progress for e in seen if e.state == jobs_pb2.JOB_STATE_RUNNING]
    assert progress[0].rows_total == 5_000 and progress[0].shards_total == 5
    done = [p.rows_done for p in progress]
    assert done == sorted(done) and done[-1] == 5_000
    assert seen[-1].score_progress.shards_done == 5

    model, features = sklearn_model(tmp_path / "data", trained.model_id)
    output = read_dataset(client, "many-scored", tmp_path)
    assert list(output.columns) == ["id", "prediction"]
    assert output["id"].tolist() == list(range(5_000))  # input row order
    np.testing.assert_array_equal(output["prediction"], model.predict(frame[features]))
    stored = client.get_dataset("many-scored")
    assert stored.rows == 5_000
    assert [(c.name, c.dtype) for c in stored.columns] == [
        ("id", "integer"),
        ("prediction", "numeric"),
    ]
    # Described as pandas reads it: a model trains on it (a worker's load checks the schema).
    client.train("many-scored", "prediction", features=["id"], estimator="decision_tree")
    assert not list((tmp_path / "data" / "storage").glob("dataset-parts/*/*/*"))  # parts gone


def test_a_classifier_gets_a_probability_column_per_class_in_parquet(
    client: MLGateClient, tmp_path: Path
) -> None:
    trained = client.train("iris", "target", model_name="flowers")
    result = client.score("flowers", "iris", "iris-scored", format="parquet", shard_rows=40)
    iris = client.get_dataset("iris")
    names = [c.name for c in iris.columns]
    expected = (*names, "prediction", "proba_0", "proba_1", "proba_2")
    assert (result.rows, result.format, result.columns) == (150, "parquet", expected)

    model, features = sklearn_model(tmp_path / "data", trained.model_id)
    output = read_dataset(client, "iris-scored", tmp_path)
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    assert list(output.columns) == list(expected)
    pd.testing.assert_frame_equal(output[names], frame[names], check_dtype=False)
    np.testing.assert_array_equal(output["prediction"], model.predict(frame[features]))
    proba = model.predict_proba(frame[features])
    np.testing.assert_array_equal(output[["proba_0", "proba_1", "proba_2"]].to_numpy(), proba)


def test_a_cancelled_scoring_job_leaves_no_dataset_and_no_parts(
    client: MLGateClient, tmp_path: Path
) -> None:
    _upload(client, tmp_path, "big", diabetes_rows(100_000))
    client.train("diabetes", "target", features=DIABETES_FEATURES, model_name="dia")
    started = threading.Event()
    job_ids: list[str] = []

    def on_event(event: jobs_pb2.JobEvent) -> None:
        job_ids.append(event.job_id)
        if event.score_progress.shards_done >= 2:
            started.set()

    def cancel_when_started() -> None:
        started.wait(60)
        client.cancel_job(job_ids[0])

    canceller = threading.Thread(target=cancel_when_started)
    canceller.start()
    with pytest.raises(JobCancelled):
        client.score("dia", "big", "big-scored", shard_rows=1_000, on_event=on_event)
    canceller.join()
    children = list(
        client._jobs.ListJobs(
            jobs_pb2.ListJobsRequest(parent_job_id=job_ids[0], page_size=1000)
        ).jobs
    )
    assert children and all(c.kind == jobs_pb2.JOB_KIND_SHARD for c in children)
    assert len(children) < 101  # the commit was never made
    wait_for(
        lambda: all(
            client.get_job(c.id).state != "running" and client.get_job(c.id).state != "queued"
            for c in children
        ),
        30,
        "every shard ended",
    )
    with pytest.raises(MLGateError) as missing:
        client.get_dataset("big-scored")
    assert missing.value.code == "NOT_FOUND"
    parts = tmp_path / "data" / "storage" / "dataset-parts"
    wait_for(lambda: not list(parts.glob("*/*/*")), 10, "the parts removed")


@pytest.mark.parametrize(
    ("change", "code", "named"),
    [
        ({"keep_columns": ["id", "nope"]}, "INVALID_ARGUMENT", "'nope' is not a column"),
        ({"format": "xlsx"}, "INVALID_ARGUMENT", "format"),
        ({"output_dataset_id": "Bad Id"}, "INVALID_ARGUMENT", "output_dataset_id"),
        ({"output_dataset_id": "iris"}, "ALREADY_EXISTS", "iris"),
        ({"dataset_id": "missing"}, "NOT_FOUND", "missing"),
        ({"model": "nobody"}, "NOT_FOUND", "nobody"),
        ({"dataset_id": "iris"}, "INVALID_ARGUMENT", "has no column 'age'"),
        ({"keep_columns": ["prediction"]}, "INVALID_ARGUMENT", "'prediction'"),
        ({"dataset_id": "texts"}, "INVALID_ARGUMENT", "column 'age' of dataset 'texts' is string"),
    ],
)
def test_bad_requests_are_refused_naming_what_to_change(
    client: MLGateClient, tmp_path: Path, change: dict[str, object], code: str, named: str
) -> None:
    frame = diabetes_rows(50)
    frame["prediction"] = 0.0
    _upload(client, tmp_path, "small", frame)
    _upload(client, tmp_path, "texts", frame.assign(age="old"))
    client.train("diabetes", "target", features=DIABETES_FEATURES, model_name="dia")
    request: dict[str, object] = {
        "model": "dia",
        "dataset_id": "small",
        "output_dataset_id": "small-scored",
        "keep_columns": ["id"],
        **change,
    }
    with pytest.raises(MLGateError) as refused:
        client.score(**request)  # type: ignore[arg-type]
    assert refused.value.code == code
    assert named in str(refused.value)
    with pytest.raises(MLGateError):
        client.get_dataset("small-scored")


def test_scoring_another_callers_dataset_needs_its_data_rights(tmp_path: Path) -> None:
    authed = start_authed(tmp_path, embedded_workers=True)
    try:
        address = authed.address
        with (
            MLGateClient(address, token=authed.tokens["alice"], timeout=60) as alice,
            MLGateClient(address, token=authed.tokens["bob"], timeout=60) as bob,
            MLGateClient(address, token=authed.tokens["ops"], timeout=60) as ops,
        ):
            _upload(alice, tmp_path, "alices", diabetes_rows(200))
            bob.train("diabetes", "target", features=DIABETES_FEATURES, model_name="bobs")
            with pytest.raises(MLGateError) as refused:
                bob.score("bobs", "alices", "bob-has-alices")
            assert refused.value.code == "PERMISSION_DENIED"
            assert "'alices'" in str(refused.value) and "'alice'" in str(refused.value)
            assert bob.score("bobs", "diabetes", "bob-scored").rows == 442  # built in: anyone's
            assert alice.score("bobs", "alices", "alice-scored").rows == 200  # her own data
            assert ops.get_dataset("alice-scored").owner == "alice"
    finally:
        authed.gateway.stop()
