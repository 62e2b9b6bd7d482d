"""Parquet datasets: detected by PAR1 or taken at their word, described with their own types,
refused naming the column when nested, loaded as training reads them, read in row ranges, and
written in parts that appear whole."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlgate.errors import AlreadyExists, FailedPrecondition, InvalidField
from storage.base import ObjectStore
from storage.datasets import DatasetCatalog, data_key


@pytest.fixture
def catalog(store: ObjectStore) -> DatasetCatalog:
    """A catalog on each object store backend (tests/storage/conftest.py)."""
    return DatasetCatalog(store)


def _typed(rows: int = 40) -> pd.DataFrame:
    """Every kind of column a person brings: ints, floats, bools, strings and categories."""
    return pd.DataFrame(
        {
            "rooms": [1 + i % 5 for i in range(rows)],
            "area": [50.5 + i for i in range(rows)],
            "garden": [i % 3 == 0 for i in range(rows)],
            "street": [f"street {i % 7}" for i in range(rows)],
            "district": pd.Categorical([["north", "south", "east"][i % 3] for i in range(rows)]),
            "price": [100.0 + 3.5 * i for i in range(rows)],
        }
    )


def _parquet(frame: pd.DataFrame | pa.Table, **options: object) -> io.BytesIO:
    buffer = io.BytesIO()
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame)
    pq.write_table(table, buffer, **options)
    buffer.seek(0)
    return buffer


def test_a_parquet_upload_is_detected_and_described_with_its_types(
    catalog: DatasetCatalog,
) -> None:
    data = _parquet(_typed())
    dataset = catalog.upload_file("homes", data)
    assert dataset.format == "parquet" and dataset.rows == 40 and dataset.delimiter == ""
    assert [(c.name, c.dtype) for c in dataset.columns] == [
        ("rooms", "integer"),
        ("area", "numeric"),
        ("garden", "boolean"),
        ("street", "string"),
        ("district", "string"),  # a categorical is a string column to training
        ("price", "numeric"),
    ]
    import hashlib

    assert dataset.sha256 == hashlib.sha256(data.getvalue()).hexdigest()
    assert catalog.store.exists(data_key("homes", "parquet"))
    assert catalog.describe("homes") == dataset


def test_a_parquet_dataset_loads_as_its_schema_says(catalog: DatasetCatalog) -> None:
    frame = _typed()
    frame.loc[3, "area"] = None
    catalog.upload_file("homes", _parquet(frame), form="parquet")
    loaded, digest = catalog.load_with_digest("homes")
    assert digest == catalog.describe("homes").sha256
    assert loaded["rooms"].dtype == "int64" and loaded["garden"].dtype == bool
    assert loaded["district"].tolist() == frame["district"].astype(str).tolist()
    assert loaded["area"].isna().sum() == 1


def test_gaps_make_integers_numeric_and_booleans_strings_as_in_a_csv(
    catalog: DatasetCatalog,
) -> None:
    table = pa.table(
        {
            "count": pa.array([1, None, 3], pa.int32()),
            "flag": pa.array([True, None, False]),
            "blank": pa.array([None, None, None], pa.null()),
            "when": pa.array([0, 1, 2], pa.timestamp("s")),
            "cost": pa.array([1, 2, 3], pa.decimal128(5, 2)),
        }
    )
    dataset = catalog.upload_file("gaps", _parquet(table))
    assert [(c.name, c.dtype) for c in dataset.columns] == [
        ("count", "numeric"),
        ("flag", "string"),
        ("blank", "numeric"),
        ("when", "string"),
        ("cost", "numeric"),
    ]
    catalog.load("gaps")  # reads as described, or FailedPrecondition


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        (pa.array([[1, 2], [3]]), "list"),
        (pa.array([{"a": 1}, {"a": 2}]), "struct"),
        (pa.array([[("k", 1)], [("j", 2)]], pa.map_(pa.string(), pa.int64())), "map"),
    ],
)
def test_a_nested_column_is_refused_naming_it(
    catalog: DatasetCatalog, column: pa.Array, kind: str
) -> None:
    table = pa.table({"size": [1.0, 2.0], "parts": column})
    with pytest.raises(InvalidField, match=rf"column 'parts' is a nested column \({kind}"):
        catalog.upload_file("nested", _parquet(table))
    assert not catalog.store.exists(data_key("nested", "parquet"))


def test_a_file_that_claims_to_be_parquet_but_is_not_is_refused(catalog: DatasetCatalog) -> None:
    with pytest.raises(InvalidField, match="says format parquet but the file is not Parquet"):
        catalog.upload_file("fake", io.BytesIO(b"size,price\n1,2\n"), form="parquet")
    truncated = _parquet(_typed()).getvalue()[:200]
    with pytest.raises(InvalidField, match="not a readable Parquet file"):
        catalog.upload_file("fake", io.BytesIO(truncated))
    damaged = bytearray(_parquet(_typed()).getvalue())
    damaged[8:60] = b"\xff" * 52
    with pytest.raises(InvalidField, match="Parquet"):
        catalog.upload_file("fake", io.BytesIO(bytes(damaged)))
    with pytest.raises(InvalidField, match=r"format: is csv but the file is Parquet"):
        catalog.upload_file("fake", _parquet(_typed()), form="csv")
    with pytest.raises(InvalidField, match="must be csv or parquet"):
        catalog.upload_file("fake", _parquet(_typed()), form="orc")
    assert [d.id for d in catalog.list() if not d.builtin] == []


def test_a_csv_whose_header_starts_par1_is_still_a_csv(catalog: DatasetCatalog) -> None:
    dataset = catalog.upload_file("odd", io.BytesIO(b"PAR1,price\n1,2\n3,4\n"))
    assert dataset.format == "csv" and [c.name for c in dataset.columns] == ["PAR1", "price"]


def test_replacing_a_csv_with_parquet_leaves_no_stale_file(catalog: DatasetCatalog) -> None:
    catalog.upload_file("homes", io.BytesIO(b"a,b\n1,2\n"))
    catalog.upload_file("homes", _parquet(_typed()), replace=True)
    assert not catalog.store.exists(data_key("homes", "csv"))
    assert catalog.describe("homes").format == "parquet"
    catalog.delete("homes")
    assert list(catalog.store.list("datasets/")) == []


def test_row_ranges_read_only_their_rows_typed_as_the_whole(catalog: DatasetCatalog) -> None:
    frame = _typed(1000)
    frame["rooms"] = frame["rooms"].astype("float64")
    frame.loc[990, "rooms"] = None  # a gap in the last row group only
    catalog.upload_file("homes", _parquet(frame, row_group_size=128))
    whole = catalog.load("homes")
    for start, stop in [(0, 10), (120, 260), (500, 500), (900, 1000), (0, 1000)]:
        part = catalog.read_rows("homes", start, stop)
        assert list(part.index) == list(range(start, stop))
        expected = whole.iloc[start:stop]
        pd.testing.assert_frame_equal(part, expected, check_index_type=False)
    with catalog.open_reader("homes") as reader:
        batches = list(reader.iter_batches(300))
        assert [len(b) for b in batches] == [300, 300, 300, 100]
        pd.testing.assert_frame_equal(pd.concat(batches), whole, check_index_type=False)
    with pytest.raises(InvalidField, match=r"range \[990, 1001\) is outside"):
        catalog.read_rows("homes", 990, 1001)
    assert catalog.row_count("homes") == 1000


def test_row_ranges_of_a_csv_and_a_builtin(catalog: DatasetCatalog) -> None:
    catalog.upload_file("small", io.BytesIO(b"a,b\n1,x\n2,y\n3,\n"))
    assert catalog.read_rows("small", 1, 3)["a"].tolist() == [2, 3]
    iris = catalog.read_rows("iris", 145, 150)
    assert list(iris.index) == list(range(145, 150)) and iris["target"].tolist() == [2] * 5


def test_a_reader_planned_on_one_version_refuses_another(catalog: DatasetCatalog) -> None:
    catalog.upload_file("homes", _parquet(_typed()))
    planned = catalog.describe("homes").sha256
    catalog.upload_file("homes", _parquet(_typed(50)), replace=True)
    with pytest.raises(FailedPrecondition, match="was replaced after the job started"):
        catalog.read_rows("homes", 0, 5, sha256=planned)
    assert len(catalog.read_rows("homes", 0, 50)) == 50


@pytest.mark.parametrize("form", ["csv", "parquet"])
def test_parts_written_out_of_order_commit_whole_in_order(
    catalog: DatasetCatalog, form: str
) -> None:
    frame = _typed(30)
    parts = catalog.parts("scored", "job_0123", form)
    for index in (2, 0, 1):
        parts.write(index, frame.iloc[index * 10 : (index + 1) * 10])
    with pytest.raises(FailedPrecondition, match="parts 3 of 4 were not written"):
        parts.commit(4)
    assert [d.id for d in catalog.list() if not d.builtin] == []
    parts.write(1, frame.iloc[10:20])  # a rerun shard writes its part again
    dataset = parts.commit(3, owner="alice")
    assert (dataset.format, dataset.rows, dataset.owner) == (form, 30, "alice")
    loaded = catalog.load("scored")
    assert loaded["street"].tolist() == frame["street"].tolist()
    assert loaded["garden"].tolist() == frame["garden"].tolist()
    assert parts.written() == [] and parts.committed()
    with pytest.raises(AlreadyExists):
        again = catalog.parts("scored", "job_4567", form)
        again.write(0, frame)
        again.commit(1)


def test_a_part_with_only_blanks_in_a_column_joins_the_others_type(
    catalog: DatasetCatalog,
) -> None:
    parts = catalog.parts("scored", "job_1", "parquet")
    parts.write(0, pd.DataFrame({"id": [None, None], "p": [0.5, 0.25]}))
    parts.write(1, pd.DataFrame({"id": ["a", "b"], "p": [0.75, 1.0]}))
    dataset = parts.commit(2)
    assert [(c.name, c.dtype) for c in dataset.columns] == [("id", "string"), ("p", "numeric")]
