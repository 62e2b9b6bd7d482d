"""Uploads and stored files as the probe crafted them: each refused naming what was found, with the
status a client can act on, never INTERNAL.

CSVs: binary data, a bare CR, a header wider than the csv module's 128 KiB field bound (no dataset
above ~16,000 columns before), a header row over 16 MiB ("the upload is empty" before). Manifests:
a sha256 that holds a path (INTERNAL before: it reached the object store as a key)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from mlgate.errors import InvalidField
from mlgate.failures import Backends, public
from mlgate.v1 import models_pb2
from storage.datasets import DatasetCatalog
from storage.errors import IntegrityError
from storage.local import LocalObjectStore
from storage.models import ARRAYS, Encoded, ModelRepository


@pytest.fixture
def catalog(tmp_path: Path) -> DatasetCatalog:
    return DatasetCatalog(LocalObjectStore(tmp_path / "objects"))


def _upload(catalog: DatasetCatalog, data: bytes) -> None:
    catalog.upload_file("data", io.BytesIO(data))


def _refusal(catalog: DatasetCatalog, data: bytes) -> str:
    with pytest.raises(InvalidField) as caught:
        _upload(catalog, data)
    assert caught.value.field == "chunk"
    return caught.value.message


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"a,b\n1,2\n\x00\x01\x02,3\n",
            "chunk: line 3 holds a NUL byte: this is binary data, not CSV",
        ),
        (bytes(range(256)) * 64, "chunk: line 1 holds a NUL byte: this is binary data, not CSV"),
    ],
    ids=["nul-in-text", "binary"],
)
def test_binary_data_is_refused_saying_so(
    catalog: DatasetCatalog, data: bytes, message: str
) -> None:
    assert _refusal(catalog, data) == message


def test_a_nul_past_the_sample_is_named_by_line(catalog: DatasetCatalog) -> None:
    text = b"a,b\n" + b"1,2\n" * 20_000 + b"3,\x00\n"  # past the 64 KiB sample
    assert _refusal(catalog, text) == (
        "chunk: line 20002 holds a NUL byte: this is binary data, not CSV"
    )


def test_lines_ending_in_a_bare_cr_are_read_as_lines(catalog: DatasetCatalog) -> None:
    # Old Mac line ends: pandas reads them, and so does the upload's check.
    _upload(catalog, b"a,b\r1,2\r3,4\r")
    dataset = catalog.describe("data")
    assert ([c.name for c in dataset.columns], dataset.rows) == (["a", "b"], 2)
    assert catalog.load("data").to_dict("list") == {"a": [1, 3], "b": [2, 4]}


def test_a_stray_cr_is_named_by_the_line_it_cuts(catalog: DatasetCatalog) -> None:
    assert _refusal(catalog, b"a,b\n1,2\r3\n4,5\n").startswith(
        "chunk: line 3 has 1 fields but the header row has 2"
    )


def test_a_header_wider_than_the_csv_field_bound_is_accepted(catalog: DatasetCatalog) -> None:
    names = [f"column_{i:05d}" for i in range(20_000)]  # 260 KB: one field under ";" and "|"
    header = ",".join(names).encode()
    assert len(header) > 128 * 1024
    _upload(catalog, header + b"\n" + b",".join([b"1"] * len(names)) + b"\n")
    dataset = catalog.describe("data")
    assert (dataset.delimiter, len(dataset.columns), dataset.rows) == (",", 20_000, 1)


def test_a_header_row_over_16_mib_is_refused_saying_so(catalog: DatasetCatalog) -> None:
    header = b",".join(b"c%07d" % i for i in range(2_200_000))  # 19 MB, no line end
    assert _refusal(catalog, header + b"\n1\n") == (
        "chunk: the header row is longer than 16 MiB (no line ends in the first 16 MiB), the "
        "longest mlgate reads; is this a CSV file with one header row?"
    )


def test_a_field_over_16_mib_is_refused_naming_its_line(catalog: DatasetCatalog) -> None:
    data = b"a,b\n1,2\n3," + b"x" * (17 * 2**20) + b"\n"
    assert _refusal(catalog, data).startswith(
        "chunk: line 3 has a field over 16 MiB, the longest a CSV field may be"
    )


def test_a_manifest_whose_digest_is_a_path_is_data_loss(tmp_path: Path) -> None:
    repo = ModelRepository(LocalObjectStore(tmp_path / "objects"))
    record = models_pb2.Model(id="mdl_" + "0" * 32, estimator="random_forest")
    repo.save_encoded(record, Encoded(ARRAYS, b"not really a model"))
    manifest = tmp_path / "objects" / "models" / record.id / "manifest.json"
    saved = json.loads(manifest.read_text())
    saved["model"]["sha256"] = "../../../../etc/passwd"
    manifest.write_text(json.dumps(saved))
    for read in (repo.get, lambda model_id: repo.export(model_id, io.BytesIO())):
        with pytest.raises(IntegrityError) as caught:
            read(record.id)
        told = public(caught.value, Backends("memory", "sqlite", "local"), "GetModel")
        assert (told.code, told.message) == (
            "DATA_LOSS",
            f"model {record.id} has a corrupt manifest: its sha256 is not a SHA-256 digest",
        )
