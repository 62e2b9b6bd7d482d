"""Input drift's parts without a gateway: the training reference (workers.reference), the
gateway's bins and PSI (server.drift_bins) held to a numpy computation, and the tracker's window,
sampling and bounds (server.drift)."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from mlgate import jobs
from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.v1 import datasets_pb2, jobs_pb2, models_pb2
from server import drift
from server.drift_bins import EPSILON, level
from server.ownership import MODEL_CARD
from storage.datasets import dtype_name
from tests.support.waiting import wait_for
from workers import fitting, training
from workers.messages import FitTask
from workers.reference import reference

DTYPES = {"x": "numeric", "n": "integer", "color": "string", "flag": "boolean"}


def _training(rows: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(10.0, 2.0, rows),
            "n": rng.integers(0, 4, rows),
            "color": rng.choice(["red", "green", "blue"], rows, p=[0.5, 0.3, 0.2]),
            "flag": rng.choice([True, False], rows),
        }
    )


@functools.cache
def _described() -> models_pb2.Model:
    record = models_pb2.Model()
    for name, dtype in DTYPES.items():
        record.features.add(name=name, dtype=dtype)
    for name, described in reference(_training(), DTYPES).items():
        record.input_reference[name].CopyFrom(described)
    return record


def _record(model_id: str = "mdl_drift") -> models_pb2.Model:
    """A model trained on ``_training()``, as its record describes it."""
    record = models_pb2.Model()
    record.CopyFrom(_described())
    record.id = model_id
    return record


def _expected_psi(expected: np.ndarray, observed_counts: np.ndarray) -> float:
    """The PSI as the docs define it, with numpy."""
    a = np.maximum(observed_counts / observed_counts.sum(), EPSILON)
    e = np.maximum(expected, EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def _columns_request(frame: pd.DataFrame) -> jobs_pb2.PredictRequest:
    request = jobs_pb2.PredictRequest(model_id="m")
    request.columns.add(name="x").doubles.values.extend(frame["x"].tolist())
    request.columns.add(name="n").int64s.values.extend(int(v) for v in frame["n"])
    request.columns.add(name="color").strings.values.extend(frame["color"].tolist())
    request.columns.add(name="flag").bools.values.extend(bool(v) for v in frame["flag"])
    return request


@pytest.fixture
def tracker() -> Iterator[drift.DriftTracker]:
    made = drift.DriftTracker(1000)
    yield made
    made.close()


def _settle(tracker: drift.DriftTracker) -> None:
    wait_for(tracker.settled, 10, "the drift thread to bin what it was handed")


def test_reference_is_deciles_and_frequencies_of_the_training_rows() -> None:
    frame = _training()
    found = reference(frame, DTYPES)
    x = frame["x"].to_numpy()
    edges = np.percentile(x, list(range(10, 100, 10)))
    assert list(found["x"].edges) == pytest.approx(edges.tolist())
    assert sum(found["x"].shares) == pytest.approx(1.0)
    # Ties: an integer feature with 4 values puts whole values on the edges.
    assert sum(found["n"].shares) == pytest.approx(1.0)
    assert max(found["n"].shares) > 0.2
    assert dict(found["color"].frequencies) == pytest.approx(
        (frame["color"].value_counts() / len(frame)).to_dict()
    )
    assert set(found["flag"].frequencies) == {"true", "false"}


def test_blanks_are_left_out_and_a_column_of_blanks_has_no_reference() -> None:
    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0, 4.0], "s": ["a", None, "", "b"]})
    found = reference(frame, {"x": "numeric", "s": "string"})
    assert dict(found["s"].frequencies) == {"a": 0.5, "b": 0.5}
    assert reference(pd.DataFrame({"x": [np.nan] * 3}), {"x": "numeric"}) == {}


def test_psi_equals_a_numpy_computation_on_a_fixed_window(
    tracker: drift.DriftTracker,
) -> None:
    record = _record()
    served = _training(1000, seed=7)
    served["x"] += 1.5  # some drift, and a category training never had
    served.loc[:99, "color"] = "purple"
    read = [dict(zip(served.columns, row, strict=True)) for row in served.to_numpy().tolist()]
    tracker.offer_predict(record, ("drifting", 1), jobs_pb2.PredictRequest(), read, len(read))
    _settle(tracker)
    answer = tracker.report(record, "drifting", 1)
    assert answer.window_rows == 1000 and answer.rows_seen == 1000 and answer.has_reference
    psis = {f.feature: f.psi for f in answer.features}

    ref = record.input_reference
    x_bins = np.searchsorted(np.array(ref["x"].edges), served["x"].to_numpy(), side="left")
    x_expected = _expected_psi(np.array(ref["x"].shares), np.bincount(x_bins, minlength=10))
    assert psis["x"] == pytest.approx(x_expected, rel=1e-9)
    n_bins = np.searchsorted(np.array(ref["n"].edges), served["n"].to_numpy(), side="left")
    n_expected = _expected_psi(np.array(ref["n"].shares), np.bincount(n_bins, minlength=10))
    assert psis["n"] == pytest.approx(n_expected, rel=1e-9)

    categories = list(ref["color"].frequencies)
    shares = np.array([ref["color"].frequencies[c] for c in categories] + [0.0])
    counts = np.array(
        [(served["color"] == c).sum() for c in categories]
        + [(~served["color"].isin(categories)).sum()]
    )
    assert psis["color"] == pytest.approx(_expected_psi(shares, counts), rel=1e-9)
    levels = {f.feature: f.level for f in answer.features}
    assert levels["x"] == level(psis["x"]) == "major"
    assert levels["flag"] == "ok"


def test_modelinfer_tensors_and_predict_columns_bin_alike(tracker: drift.DriftTracker) -> None:
    record = _record()
    served = _training(600, seed=3)
    request = pb.ModelInferRequest(model_name="m")  # raw contents, every datatype's form
    request.inputs.add(name="x", datatype="FP64", shape=[600])
    request.raw_input_contents.append(served["x"].to_numpy().astype("<f8").tobytes())
    request.inputs.add(name="n", datatype="INT64", shape=[600, 1])
    request.raw_input_contents.append(served["n"].to_numpy().astype("<i8").tobytes())
    request.inputs.add(name="color", datatype="BYTES", shape=[600])
    request.raw_input_contents.append(
        b"".join(len(c).to_bytes(4, "little") + c.encode() for c in served["color"])
    )
    request.inputs.add(name="flag", datatype="BOOL", shape=[600])
    request.raw_input_contents.append(served["flag"].to_numpy().astype("|b1").tobytes())
    tracker.offer_infer(record, ("", 0), request, 600, request.ByteSize())
    _settle(tracker)
    by_tensors = tracker.report(record, "", 0)

    other = _record("mdl_other")
    tracker.offer_predict(other, ("", 0), _columns_request(served), [], 600)
    _settle(tracker)
    by_columns = tracker.report(other, "", 0)
    assert [f.psi for f in by_tensors.features] == [f.psi for f in by_columns.features]
    assert by_tensors.window_rows == 600


def test_a_matrix_request_is_read_by_column(tracker: drift.DriftTracker) -> None:
    record = models_pb2.Model(id="mdl_matrix")
    for name in ("a", "b"):
        record.features.add(name=name, dtype="numeric")
        record.input_reference[name].edges.extend(float(e) for e in range(1, 10))
        record.input_reference[name].shares.extend([0.1] * 10)
    values = np.array([[0.5, 9.5]] * 50)  # a in the first bin, b in the last
    request = pb.ModelInferRequest(model_name="m")
    tensor = request.inputs.add(name="input", datatype="FP64", shape=[50, 2])
    tensor.contents.fp64_contents.extend(values.ravel().tolist())
    tracker.offer_infer(record, ("", 0), request, 50, 1600)
    _settle(tracker)
    one = _expected_psi(np.full(10, 0.1), np.array([50] + [0] * 9))
    assert [f.psi for f in tracker.report(record, "", 0).features] == pytest.approx([one, one])


def test_the_window_holds_the_last_rows_only() -> None:
    tracker = drift.DriftTracker(100)
    try:
        record = models_pb2.Model(id="mdl_window")
        record.features.add(name="a", dtype="numeric")
        record.input_reference["a"].edges.extend(float(e) for e in range(1, 10))
        record.input_reference["a"].shares.extend([0.1] * 10)
        for value in (0.5, 9.5):  # 900 rows in the first bin, then 250 in the last
            rows = 900 if value == 0.5 else 250
            read = [{"a": value}] * rows
            tracker.offer_predict(record, ("", 0), jobs_pb2.PredictRequest(), read, rows)
        _settle(tracker)
        answer = tracker.report(record, "", 0)
        assert answer.window_rows == 100 and answer.rows_seen == 1150
        expected = _expected_psi(np.full(10, 0.1), np.array([0] * 9 + [100]))
        assert answer.features[0].psi == pytest.approx(expected)
    finally:
        tracker.close()


def test_above_the_rate_rows_are_sampled_and_all_counted(tracker: drift.DriftTracker) -> None:
    record = models_pb2.Model(id="mdl_rate")
    record.features.add(name="a", dtype="numeric")
    record.input_reference["a"].edges.extend(float(e) for e in range(1, 10))
    record.input_reference["a"].shares.extend([0.1] * 10)
    version = drift._Version(record, "", 0, 1000)
    taken = version.take(50_000, time.monotonic())
    assert taken is not None and len(taken) == drift.RATE and taken.step == 5
    assert version.take(10, time.monotonic()) is None  # the bucket is empty for now
    assert version.rows_seen == 50_010
    later = version.take(10, time.monotonic() + 0.5)  # half a second refills half
    assert later is not None and len(later) == 10


def test_versions_are_bounded_and_forgotten(tracker: drift.DriftTracker) -> None:
    read = [{"x": 1.0}]
    first = _record("mdl_first")
    tracker.offer_predict(first, ("first", 1), jobs_pb2.PredictRequest(), read, 1)
    for i in range(drift.MAX_VERSIONS):
        record = _record(f"mdl_{i:04d}")
        tracker.offer_predict(record, (f"m{i}", 1), jobs_pb2.PredictRequest(), read, 1)
    _settle(tracker)
    assert tracker.report(first, "first", 1).rows_seen == 0  # the least recently fed went
    last = _record(f"mdl_{drift.MAX_VERSIONS - 1:04d}")
    assert tracker.report(last, "", 0).rows_seen == 1
    tracker.forget(last.id)
    assert tracker.report(last, "", 0).rows_seen == 0


def test_a_model_without_reference_says_so(tracker: drift.DriftTracker) -> None:
    record = models_pb2.Model(id="mdl_old")
    record.features.add(name="x", dtype="numeric")
    tracker.offer_predict(record, ("old", 1), jobs_pb2.PredictRequest(), [{"x": 1.0}], 1)
    answer = tracker.report(record, "old", 1)
    assert not answer.has_reference
    assert [(f.feature, f.level, f.psi) for f in answer.features] == [("x", "no reference", 0)]
    assert answer.rows_seen == 1


def test_window_zero_tracks_nothing() -> None:
    off = drift.DriftTracker(0)
    record = _record()
    off.offer_predict(record, ("m", 1), jobs_pb2.PredictRequest(), [{"x": 1.0}], 1)
    assert off.report(record, "m", 1).window_rows == 0
    assert {f.level for f in off.report(record, "m", 1).features} == {"no data"}


def test_the_reference_is_a_training_detail_hidden_from_non_owners() -> None:
    # Not on the card everyone sees: visible_model clears every field the card does not list.
    assert "input_reference" not in MODEL_CARD
    assert "input_reference" in models_pb2.Model.DESCRIPTOR.fields_by_name


def test_a_full_queue_drops_and_counts_and_never_blocks(tracker: drift.DriftTracker) -> None:
    record = _record("mdl_flood")
    read = [{"x": 10.0, "n": 1, "color": "red", "flag": True}]
    started = time.perf_counter()
    # Faster than the drift thread's 20 ms gathering: the queue fills and the rest is dropped.
    for _ in range(drift.MAX_QUEUED + 200):
        tracker.offer_predict(record, ("flood", 1), jobs_pb2.PredictRequest(), read, 1)
    assert time.perf_counter() - started < 1.0
    assert tracker.dropped >= 200 - 1
    _settle(tracker)
    answer = tracker.report(record, "flood", 1)
    assert answer.rows_seen == drift.MAX_QUEUED + 200
    assert answer.window_rows == 1000  # what was queued was binned
    (dropped,) = [m for m in tracker.collect() if m.name == "mlgate_drift_dropped"]
    assert dropped.samples[0].value == tracker.dropped


def test_the_record_describes_the_training_part_before_imputation() -> None:
    frame = _training(400, seed=5)[["x", "color"]]
    frame["target"] = frame["x"] * 2.0
    frame.loc[frame.index % 4 == 0, "x"] = np.nan  # a quarter blank, filled by the median
    schema = datasets_pb2.Dataset(id="data", rows=len(frame))
    for name, dtype in frame.dtypes.items():
        schema.columns.add(name=str(name), dtype=dtype_name(dtype))
    request = jobs_pb2.TrainRequest(
        dataset_id="data", target="target", impute="median", test_size=0.25, random_seed=1
    )
    plan = jobs.plan(request, schema)
    trained = training.fit(frame, plan, lambda stage, fraction: None)
    record = fitting._record(FitTask("job", "mdl_" + "0" * 32, plan, "", 1, 0), trained, "d")
    X_train, _ = train_test_split(frame, test_size=0.25, random_state=1)
    x = X_train["x"].dropna().to_numpy()
    # The medians filled in would pile up in one bin; the reference has the values as they came.
    assert list(record.input_reference["x"].edges) == pytest.approx(
        np.percentile(x, list(range(10, 100, 10))).tolist()
    )
    assert max(record.input_reference["x"].shares) < 0.15
    assert set(record.input_reference["color"].frequencies) == {"red", "green", "blue"}


def test_a_request_over_the_rate_gives_every_kth_row(tracker: drift.DriftTracker) -> None:
    record = models_pb2.Model(id="mdl_sampled")
    for name in ("a", "b"):
        record.features.add(name=name, dtype="numeric")
        record.input_reference[name].edges.extend(float(e) for e in range(1, 10))
        record.input_reference[name].shares.extend([0.1] * 10)
    rows = 50_000  # five times the bucket: every 5th row, so a = row % 10 gives 0 and 5 only
    X = np.column_stack([np.arange(rows) % 10 + 0.5, np.full(rows, 9.5)])
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="input", datatype="FP64", shape=[rows, 2])
    request.raw_input_contents.append(X.astype("<f8").tobytes())
    tracker.offer_infer(record, ("", 0), request, rows, request.ByteSize())
    _settle(tracker)
    answer = tracker.report(record, "", 0)
    assert (answer.rows_seen, answer.window_rows) == (rows, 1000)
    a = _expected_psi(np.full(10, 0.1), np.array([500, 0, 0, 0, 0, 500, 0, 0, 0, 0]))
    b = _expected_psi(np.full(10, 0.1), np.array([0] * 9 + [1000]))
    assert [f.psi for f in answer.features] == pytest.approx([a, b])
