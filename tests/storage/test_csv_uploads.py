"""Uploaded CSVs as people write them: the delimiter detected, the shape checked line by line,
``true``/``false`` read as booleans, and every refusal naming what and where."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest

from mlgate.errors import InvalidField
from storage.datasets import DatasetCatalog
from storage.local import LocalObjectStore


@pytest.fixture
def catalog(tmp_path: Path) -> DatasetCatalog:
    return DatasetCatalog(LocalObjectStore(tmp_path / "objects"))


def _upload(catalog: DatasetCatalog, text: str, delimiter: str = "") -> object:
    return catalog.upload_file("data", io.BytesIO(text.encode()), delimiter=delimiter)


def _columns(catalog: DatasetCatalog) -> list[tuple[str, str]]:
    return [(c.name, c.dtype) for c in catalog.describe("data").columns]


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("size;member;price\n1,5;true;2,5\n2,5;false;3\n", ";"),
        ("size\tmember\tprice\n1.5\tTRUE\t2.5\n2.5\tFalse\t3\n", "\t"),
        ("size|member|price\n1.5|true|2.5\n2.5|false|3\n", "|"),
        ("size, member, price\n1.5, true, 2.5\n2.5, false, 3\n", ","),
    ],
)
def test_the_delimiter_is_detected_and_true_false_read_as_booleans(
    catalog: DatasetCatalog, text: str, delimiter: str
) -> None:
    _upload(catalog, text)
    dataset = catalog.describe("data")
    assert dataset.delimiter == delimiter
    assert [c.name for c in dataset.columns] == ["size", "member", "price"]
    assert dict(_columns(catalog))["member"] == "boolean"
    frame = catalog.load("data")
    assert frame["member"].tolist() == [True, False]


def test_a_given_delimiter_is_used_and_recorded(catalog: DatasetCatalog) -> None:
    _upload(catalog, "a;b,c\n1;2,3\n4;5,6\n", delimiter=";")
    assert [c.name for c in catalog.describe("data").columns] == ["a", "b,c"]
    assert catalog.load("data")["b,c"].tolist() == ["2,3", "5,6"]


def test_a_given_delimiter_that_does_not_split_the_header_names_the_one_seen(
    catalog: DatasetCatalog,
) -> None:
    with pytest.raises(InvalidField) as excinfo:
        _upload(catalog, "a,b\n1,2\n", delimiter=";")
    assert excinfo.value.field == "delimiter"
    assert "the file looks comma (',')-separated" in excinfo.value.message


def test_an_unknown_delimiter_is_refused_listing_the_choices(catalog: DatasetCatalog) -> None:
    with pytest.raises(InvalidField, match=r"delimiter: must be one of comma \(','\)"):
        _upload(catalog, "a:b\n1:2\n", delimiter=":")


def test_a_header_no_known_delimiter_splits_is_refused_saying_so(catalog: DatasetCatalog) -> None:
    with pytest.raises(InvalidField, match="no comma, semicolon, tab or pipe separates it"):
        _upload(catalog, "a:b\n1:2\n")


def test_a_header_row_longer_than_the_sample_is_read_whole(catalog: DatasetCatalog) -> None:
    names = [f"feature_{i:05d}" for i in range(8_000)]  # a 112 KB header row
    _upload(catalog, ";".join(names) + "\n" + ";".join(["1"] * len(names)) + "\n")
    dataset = catalog.describe("data")
    assert dataset.delimiter == ";"
    assert [c.name for c in dataset.columns] == names


def test_duplicate_column_names_are_refused_naming_them(catalog: DatasetCatalog) -> None:
    # pandas alone would rename the second one to a.1.
    with pytest.raises(InvalidField, match=r"column name 'a' appears twice \(columns 1 and 3\)"):
        _upload(catalog, "a,b,a\n1,2,3\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n1,2\n3\n4,5\n", "line 3 has 1 fields but the header row has 2"),
        ("a,b\n1,2\n3,4,5\n", "line 3 has 3 fields but the header row has 2"),
        ("a,b\n1,2,3\n4,5\n", "line 2 has 3 fields but the header row has 2"),
        ("a;b\n1;2\n3;4;5\n", r"line 3 has 3 fields .*read as semicolon \(';'\)-separated"),
    ],
)
def test_ragged_rows_are_refused_naming_the_line(
    catalog: DatasetCatalog, text: str, message: str
) -> None:
    with pytest.raises(InvalidField, match=message):
        _upload(catalog, text)


def test_blank_lines_and_quoted_delimiters_are_not_ragged(catalog: DatasetCatalog) -> None:
    _upload(catalog, 'name,note\n"Smith, J","a; b"\n\nLee,ok\n')
    assert catalog.load("data").to_dict("list") == {
        "name": ["Smith, J", "Lee"],
        "note": ["a; b", "ok"],
    }


def test_a_dataset_stored_before_delimiters_were_recorded_still_loads(
    catalog: DatasetCatalog, tmp_path: Path
) -> None:
    _upload(catalog, "x,y\n1,2\n3,4\n")
    meta = tmp_path / "objects" / "datasets" / "data.json"
    record = json.loads(meta.read_text())
    del record["delimiter"]
    meta.write_text(json.dumps(record))
    assert catalog.describe("data").delimiter == ""
    pd.testing.assert_frame_equal(catalog.load("data"), pd.DataFrame({"x": [1, 3], "y": [2, 4]}))
