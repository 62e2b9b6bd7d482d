"""Issue 23, points 2 to 4, at the unit level: one rule for a prediction's inputs in rows, columns
and ModelInfer tensors (extra names ignored, blanks taken or refused by the model); --exclude and
the identifier warning; files that are not CSV named for what they are."""

from __future__ import annotations

import io
import math
from typing import Any

import pandas as pd
import pytest

from mlgate import jobs
from mlgate.columns import check_columns
from mlgate.errors import InvalidField
from mlgate.inputs import check_rows, notes
from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.tensors import DATATYPES, check_request
from mlgate.v1 import datasets_pb2, jobs_pb2, models_pb2
from mlgate_client.filetypes import not_csv
from storage.csvfile import parse
from workers.training import identifiers


def _model(estimator: str = "random_forest", imputed: bool = False) -> models_pb2.Model:
    record = models_pb2.Model(id="mdl_" + "0" * 32, estimator=estimator)
    for name, dtype in (("n", "numeric"), ("s", "string"), ("b", "boolean")):
        record.features.add(name=name, dtype=dtype)
    if imputed:
        record.imputation.strategy = "median"
        record.imputation.values["n"].number_value = 1.5
        record.imputation.values["s"].string_value = "a"
        record.imputation.values["b"].bool_value = True
    return record


TAKES_BLANKS = [_model(imputed=True), _model("hist_gradient_boosting")]
REFUSES_BLANKS = _model()
ROW = {"n": 1.0, "s": "a", "b": True}


@pytest.mark.parametrize(
    ("row", "field", "what"),
    [
        ({**ROW, "n": None}, "rows[0].n", "is blank (null)"),
        ({"s": "a", "b": True}, "rows[0].n", "is missing"),
        ({**ROW, "n": math.nan}, "rows[0].n", "is blank (NaN)"),
        ({**ROW, "s": ""}, "rows[0].s", "is blank (an empty string)"),
        ({**ROW, "b": None}, "rows[0].b", "is blank (null)"),
    ],
)
def test_a_blank_row_value_is_refused_by_a_model_that_takes_none(
    row: dict[str, Any], field: str, what: str
) -> None:
    with pytest.raises(InvalidField) as refused:
        check_rows([row], REFUSES_BLANKS)
    assert refused.value.field == field
    assert refused.value.message == (
        f"{field}: {what}, and this model (random_forest, trained without impute) takes no "
        "blanks: send a value, or train with impute (mlgate train --impute median) or an "
        "estimator that handles blanks (hist_gradient_boosting)"
    )
    for record in TAKES_BLANKS:
        check_rows([row], record)


def test_extra_names_are_ignored_and_named_on_every_path() -> None:
    check_rows([{**ROW, "id": 7, "note": "x"}], REFUSES_BLANKS)
    columns = [jobs_pb2.FeatureColumn(name="id")]
    columns[0].int64s.values.extend([1, 2])
    for name, field, values in (("n", "doubles", [1.0, 2.0]), ("s", "strings", ["a", "b"])):
        column = jobs_pb2.FeatureColumn(name=name)
        getattr(column, field).values.extend(values)
        columns.append(column)
    columns.append(jobs_pb2.FeatureColumn(name="b", bools=jobs_pb2.BoolValues(values=[True] * 2)))
    assert check_columns(columns, REFUSES_BLANKS) == 2
    tensors = pb.ModelInferRequest(model_name="m")
    for name, datatype, value in (
        ("note", "BYTES", b"x"),
        ("n", "FP64", 1.0),
        ("s", "BYTES", b"a"),
        ("b", "BOOL", True),
    ):
        contents = tensors.inputs.add(name=name, datatype=datatype, shape=[1]).contents
        getattr(contents, DATATYPES[datatype].field).append(value)
    assert check_request(tensors, REFUSES_BLANKS) == 1
    assert notes(["id", "n", "s", "b", "note"], REFUSES_BLANKS) == [
        "ignored id, note: not features of this model (its features: n, s, b)"
    ]


def test_blanks_in_columns_and_tensors_follow_the_same_rule() -> None:
    nan = jobs_pb2.FeatureColumn(name="n", doubles=jobs_pb2.DoubleValues(values=[1.0, math.nan]))
    text = jobs_pb2.FeatureColumn(name="s", strings=jobs_pb2.StringValues(values=["a", ""]))
    flag = jobs_pb2.FeatureColumn(name="b", strings=jobs_pb2.StringValues(values=["TRUE", ""]))
    num = jobs_pb2.FeatureColumn(name="n", doubles=jobs_pb2.DoubleValues(values=[1.0, 2.0]))
    plain = jobs_pb2.FeatureColumn(name="s", strings=jobs_pb2.StringValues(values=["a", "b"]))
    flags = jobs_pb2.FeatureColumn(
        name="b", strings=jobs_pb2.StringValues(values=["true", "False"])
    )
    for columns, field in (
        ([nan, plain, flags], "columns[0] ('n')[1]"),
        ([num, text, flags], "columns[1] ('s')[1]"),
        ([num, plain, flag], "columns[2] ('b')[1]"),
        ([plain, flags], "columns ('n')"),
    ):
        with pytest.raises(InvalidField) as refused:
            check_columns(columns, REFUSES_BLANKS)
        assert refused.value.field == field
        assert "takes no blanks" in refused.value.message
        for record in TAKES_BLANKS:
            assert check_columns(columns, record) == 2
    wrong = jobs_pb2.FeatureColumn(name="b", strings=jobs_pb2.StringValues(values=["yes", "no"]))
    with pytest.raises(InvalidField, match="send true, false or an empty string"):
        check_columns([nan, text, wrong], TAKES_BLANKS[0])
    left_out = pb.ModelInferRequest(model_name="m")
    left_out.inputs.add(name="n", datatype="FP64", shape=[1]).contents.fp64_contents.append(1.0)
    with pytest.raises(InvalidField) as refused:
        check_request(left_out, REFUSES_BLANKS)
    assert refused.value.field == "inputs ('s')" and "takes no blanks" in refused.value.message
    assert check_request(left_out, TAKES_BLANKS[0]) == 1
    assert notes(["n"], TAKES_BLANKS[0]) == [
        "feature s was not sent: it is blank in every row, filled with its imputed value 'a'",
        "feature b was not sent: it is blank in every row, filled with its imputed value true",
    ]


def _schema(**columns: str) -> datasets_pb2.Dataset:
    schema = datasets_pb2.Dataset(id="houses", rows=100)
    for name, dtype in columns.items():
        schema.columns.add(name=name, dtype=dtype)
    return schema


def test_exclude_leaves_columns_out_of_the_features() -> None:
    schema = _schema(id="integer", sqft="numeric", note="string", price="numeric")
    plan = jobs.plan(jobs_pb2.TrainRequest(target="price", exclude=["id", "note"]), schema)
    assert plan.features == ("sqft",)
    both = jobs_pb2.TrainRequest(target="price", features=["sqft", "id"], exclude=["id"])
    assert jobs.plan(both, schema).features == ("sqft",)
    for exclude, field, message in (
        (["id", "nope"], "exclude[1]", "'nope' is not a column of houses; columns: id, sqft"),
        (["id", "sqft", "note"], "exclude", "leaves no feature to train on"),
    ):
        with pytest.raises(InvalidField) as refused:
            jobs.plan(jobs_pb2.TrainRequest(target="price", exclude=exclude), schema)
        assert refused.value.field == field and message in refused.value.message


def test_a_column_unique_per_row_is_named_like_an_identifier() -> None:
    rows = 50
    frame = pd.DataFrame(
        {
            "id": range(rows),
            "code": [f"A-{i}" for i in range(rows)],
            "ids_with_blanks": [float(i) if i % 9 else math.nan for i in range(rows)],
            "bmi": [20.0 + i * 0.137 for i in range(rows)],  # a measurement: never repeats
            "rooms": [i % 5 for i in range(rows)],
        }
    )
    dtypes = {
        "id": "integer",
        "code": "string",
        "ids_with_blanks": "numeric",
        "bmi": "numeric",
        "rooms": "integer",
    }
    found = identifiers(frame, dtypes)
    assert [warning.split()[1] for warning in found] == ["id", "code", "ids_with_blanks"]
    assert found[0] == (
        "feature id has a different value in every row (50 of 50), like an identifier: a model "
        "learns nothing general from it; leave it out (mlgate train --exclude id; "
        "TrainRequest.exclude)"
    )
    assert identifiers(frame.head(10), dtypes) == []  # too few rows to tell


@pytest.mark.parametrize(
    ("head", "named"),
    [
        (b"PAR1\x15\x04\x15\x80\x01\x15\x80\x01L\x15\x02\x15\x00\x12\x00\x00", "a Parquet file"),
        (b"PK\x03\x04\x14\x00\x06\x00\x08\x00", "a ZIP archive, or an Excel .xlsx workbook"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00", "a gzip-compressed file"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00", "an old Excel .xls workbook"),
        (b"ARROW1\x00\x00\xff\xff\xff\xff", "an Arrow IPC (Feather) file"),
    ],
)
def test_a_known_binary_format_is_refused_for_what_it_is(head: bytes, named: str) -> None:
    with pytest.raises(InvalidField) as refused:
        parse(io.BytesIO(head + bytes(range(256)) * 8))
    assert refused.value.field == "chunk"
    assert refused.value.message.startswith(f"chunk: this looks like {named}")
    assert refused.value.message.endswith("not CSV: convert it to CSV (UTF-8 text) first")


def test_text_that_starts_like_a_signature_is_still_csv() -> None:
    assert not_csv(b"ORCID,PAR1\n1,2\n") is None
    assert parse(io.BytesIO(b"PAR1,ORC\n1,2\n")).columns == [
        ("PAR1", "integer"),
        ("ORC", "integer"),
    ]
