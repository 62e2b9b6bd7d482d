"""What people and scripts read: views built from messages, tables, JSON and the progress bar."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

from google.protobuf import struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from mlgate.v1 import jobs_pb2
from mlgate_client import Job, PredictResult, TrainResult
from mlgate_client._format import (
    Progress,
    event_dict,
    event_line,
    job_block,
    jobs_table,
    predictions_table,
    table,
    to_json,
    train_summary,
)

JOB = "job_" + "a" * 32
MODEL = "mdl_" + "a" * 32


def _values(*items: float | str) -> list[struct_pb2.Value]:
    out = []
    for item in items:
        value = struct_pb2.Value()
        if isinstance(item, str):
            value.string_value = item
        else:
            value.number_value = item
        out.append(value)
    return out


def _classifier_event() -> jobs_pb2.JobEvent:
    return jobs_pb2.JobEvent(
        job_id=JOB,
        seq=4,
        state=jobs_pb2.JOB_STATE_SUCCEEDED,
        progress=1.0,
        predict_result=jobs_pb2.PredictResult(
            model_id=MODEL,
            predictions=_values(2.0, 0.0),
            classes=_values(0.0, 1.0, 2.0),
            probabilities=[
                jobs_pb2.ClassProbabilities(values=[0.1, 0.2, 0.7]),
                jobs_pb2.ClassProbabilities(values=[0.9, 0.1, 0.0]),
            ],
        ),
    )


def test_classifier_labels_come_back_as_ints_and_probabilities_in_class_order() -> None:
    result = PredictResult.from_event(_classifier_event())
    assert result.job_id == JOB and result.model_id == MODEL
    assert result.predictions == (2, 0)
    assert all(type(p) is int for p in result.predictions)
    assert result.classes == (0, 1, 2)
    assert result.probabilities == ((0.1, 0.2, 0.7), (0.9, 0.1, 0.0))


def test_regression_predictions_stay_floats_and_string_labels_stay_strings() -> None:
    event = jobs_pb2.JobEvent(
        job_id=JOB, predict_result=jobs_pb2.PredictResult(predictions=_values(208.0, 1.5))
    )
    result = PredictResult.from_event(event)
    assert result.predictions == (208.0, 1.5)
    assert type(result.predictions[0]) is float
    assert result.classes == () and result.probabilities == ()
    labelled = jobs_pb2.JobEvent(
        predict_result=jobs_pb2.PredictResult(
            predictions=_values("yes"), classes=_values("no", "yes")
        )
    )
    assert PredictResult.from_event(labelled).predictions == ("yes",)


def test_job_view_reads_names_times_and_the_training_result() -> None:
    created = Timestamp(seconds=1_700_000_000)
    job = jobs_pb2.Job(
        id=JOB,
        kind=jobs_pb2.JOB_KIND_TRAIN,
        state=jobs_pb2.JOB_STATE_SUCCEEDED,
        create_time=created,
        train=jobs_pb2.TrainRequest(dataset_id="diabetes", target="target"),
        last_event=jobs_pb2.JobEvent(
            seq=6,
            state=jobs_pb2.JOB_STATE_SUCCEEDED,
            progress=1.0,
            attempt=1,
            train_result=jobs_pb2.TrainResult(model_id=MODEL, metrics={"r2": 0.47}),
        ),
    )
    view = Job.from_proto(job)
    assert (view.kind, view.state, view.stage) == ("train", "succeeded", "")
    assert (view.dataset_id, view.target, view.model_id) == ("diabetes", "target", MODEL)
    assert view.metrics == {"r2": 0.47}
    assert view.create_time == datetime.fromtimestamp(1_700_000_000, UTC)
    assert view.update_time is None
    assert view.proto is job
    block = job_block(view)
    assert "state:     succeeded" in block
    assert "metrics:   r2=0.47" in block
    assert "features:  (all but the target)" in block


def test_json_output_drops_the_message_and_writes_iso_times() -> None:
    view = Job.from_proto(
        jobs_pb2.Job(
            id=JOB,
            kind=jobs_pb2.JOB_KIND_PREDICT,
            state=jobs_pb2.JOB_STATE_QUEUED,
            create_time=Timestamp(seconds=1_700_000_000),
        )
    )
    data = json.loads(to_json([view]))
    assert data[0]["id"] == JOB
    assert data[0]["kind"] == "predict" and data[0]["state"] == "queued"
    assert data[0]["create_time"] == "2023-11-14T22:13:20+00:00"
    assert "proto" not in data[0]


def test_tables_align_columns() -> None:
    text = table(["ID", "N"], [["a", 1], ["bbb", 2.5], ["c", None]])
    assert text.splitlines() == ["ID   N", "a    1", "bbb  2.5", "c    -"]


def test_predictions_table_has_a_probability_column_per_class() -> None:
    lines = predictions_table(PredictResult.from_event(_classifier_event())).splitlines()
    assert lines[0].split() == ["row", "prediction", "p(0)", "p(1)", "p(2)"]
    assert lines[1].split() == ["0", "2", "0.100", "0.200", "0.700"]
    assert len(lines) == 3


def test_train_summary_lists_sorted_metrics() -> None:
    summary = train_summary(
        TrainResult(JOB, MODEL, {"rmse": 53.0013, "mae": 43.1432, "r2": 0.4698})
    )
    assert summary.splitlines() == [
        f"job:     {JOB}",
        f"model:   {MODEL}",
        "metrics: mae=43.1432  r2=0.4698  rmse=53.0013",
    ]


def test_events_as_lines_and_as_json() -> None:
    running = jobs_pb2.JobEvent(
        job_id=JOB,
        seq=3,
        state=jobs_pb2.JOB_STATE_RUNNING,
        stage=jobs_pb2.STAGE_FITTING,
        progress=0.2,
        attempt=1,
    )
    assert event_line(running).split() == ["3", "running", "fitting", "20%"]
    failed = jobs_pb2.JobEvent(
        job_id=JOB,
        seq=6,
        state=jobs_pb2.JOB_STATE_FAILED,
        error=jobs_pb2.JobError(code="FAILED_PRECONDITION", message="needs two classes"),
    )
    assert event_line(failed).endswith("FAILED_PRECONDITION: needs two classes")
    data = json.loads(to_json(event_dict(_classifier_event())))
    assert data["state"] == "succeeded" and data["seq"] == 4
    assert data["predict_result"]["predictions"] == [2, 0]
    assert json.loads(to_json(event_dict(failed)))["error"] == {
        "code": "FAILED_PRECONDITION",
        "message": "needs two classes",
    }
    assert jobs_table([]).split() == [
        "ID",
        "KIND",
        "STATE",
        "STAGE",
        "PROGRESS",
        "CREATED",
        "DATASET",
        "MODEL",
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_and_clears_at_the_end() -> None:
    screen = _Terminal()
    progress = Progress(screen)
    progress.update(jobs_pb2.JobEvent(state=jobs_pb2.JOB_STATE_QUEUED))
    progress.update(
        jobs_pb2.JobEvent(
            state=jobs_pb2.JOB_STATE_RUNNING, stage=jobs_pb2.STAGE_FITTING, progress=0.5
        )
    )
    drawn = screen.getvalue()
    assert "queued" in drawn
    assert "[" + "#" * 12 + "." * 12 + "]  50%  fitting" in drawn
    progress.update(jobs_pb2.JobEvent(state=jobs_pb2.JOB_STATE_SUCCEEDED, progress=1.0))
    assert screen.getvalue().endswith("\r\x1b[K")


def test_progress_bar_stays_silent_when_not_a_terminal() -> None:
    pipe = io.StringIO()
    progress = Progress(pipe)
    progress.update(jobs_pb2.JobEvent(state=jobs_pb2.JOB_STATE_RUNNING, progress=0.5))
    progress.clear()
    assert pipe.getvalue() == ""
