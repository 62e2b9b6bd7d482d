"""Parquet datasets and downloads through a gateway process and a worker process on Redis, driven
by the CLI and the client as a person would: a CSV turned into Parquet keeps its types through
upload and download, a model trains on the Parquet file as on the CSV (regression and
classification, the same numbers), broken and nested files are refused naming the column, and
any dataset comes back with ``mlgate datasets download``."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_iris

from mlgate.v1 import datasets_pb2
from mlgate_client import MLGateClient
from tests.support.cluster import Cluster, delete_cluster_namespace
from tests.support.gateway_calls import datasets, refused
from tests.support.redis import require_redis
from tests.support.serving import clean_env, run_mlgate
from tests.support.walkthroughs import ROOT, environment, run_walkthrough, script


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_redis()
    cluster = Cluster(tmp_path_factory.mktemp("cluster"), "redis")
    try:
        address = cluster.start_gateway()
        cluster.start_workers(1)
        yield address
    finally:
        cluster.stop()
        delete_cluster_namespace("redis", cluster.namespace)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("files")


def _mlgate(address: str, *argv: str) -> Any:
    return run_mlgate(*argv, env=clean_env(MLGATE_ADDRESS=address))


def _homes(rows: int = 300) -> pd.DataFrame:
    """Houses with every kind of column: ints, floats, bools, strings and a category."""
    districts = ["north", "south", "east", "west"]
    return pd.DataFrame(
        {
            "rooms": [1 + (i * 7) % 5 for i in range(rows)],
            "area": [40.0 + (i * 13) % 90 + 0.25 * (i % 4) for i in range(rows)],
            "garden": [(i * 5) % 3 == 0 for i in range(rows)],
            "street": [f"street {(i * 3) % 11}" for i in range(rows)],
            "district": pd.Categorical([districts[(i * 7) % 4] for i in range(rows)]),
            "price": [
                50.0 + 2.0 * (40.0 + (i * 13) % 90) + 15 * (1 + (i * 7) % 5) + 10 * ((i * 7) % 4)
                for i in range(rows)
            ],
        }
    )


def _json(done: Any) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def uploaded(address: str, files: Path) -> dict[str, Path]:
    """The same houses as ``homes_csv`` (a CSV) and ``homes`` (the CSV read by pandas, its
    district made a category, written as Parquet), uploaded with the CLI."""
    frame = _homes()
    csv_path = files / "homes.csv"
    frame.to_csv(csv_path, index=False)
    read = pd.read_csv(csv_path)
    read["district"] = read["district"].astype("category")
    parquet_path = files / "homes.parquet"
    read.to_parquet(parquet_path, index=False)
    _json(_mlgate(address, "--json", "datasets", "upload", str(csv_path), "--id", "homes_csv"))
    _json(_mlgate(address, "--json", "datasets", "upload", str(parquet_path)))
    return {"csv": csv_path, "parquet": parquet_path}


def test_csv_to_parquet_to_download_keeps_every_type(
    address: str, files: Path, uploaded: dict[str, Path]
) -> None:
    got = _json(_mlgate(address, "--json", "datasets", "get", "homes"))
    from_csv = _json(_mlgate(address, "--json", "datasets", "get", "homes_csv"))
    assert (got["format"], from_csv["format"]) == ("parquet", "csv")
    assert got["columns"] == from_csv["columns"]  # the same schema, however it came
    assert [c["dtype"] for c in got["columns"]] == [
        "integer",
        "numeric",
        "boolean",
        "string",
        "string",
        "numeric",
    ]
    target = files / "back.parquet"
    done = _json(_mlgate(address, "--json", "datasets", "download", "homes", "-o", str(target)))
    assert done["dataset"]["format"] == "parquet" and done["file"] == str(target)
    assert target.read_bytes() == uploaded["parquet"].read_bytes()
    back = pd.read_parquet(target)
    assert back["district"].dtype == "category"
    assert dict(back.dtypes.astype(str)) == {
        "rooms": "int64",
        "area": "float64",
        "garden": "bool",
        "street": str(back["street"].dtype),
        "district": "category",
        "price": "float64",
    }
    original = _homes()
    pd.testing.assert_frame_equal(back, original, check_dtype=False, check_categorical=False)
    assert back["street"].tolist() == original["street"].tolist()
    # And the CSV comes back byte for byte.
    target_csv = files / "back.csv"
    text = _mlgate(address, "datasets", "download", "homes_csv", "-o", str(target_csv))
    assert text.returncode == 0, text.stderr
    assert "homes_csv downloaded to" in text.stdout and ", csv, 300 rows" in text.stdout
    assert target_csv.read_bytes() == uploaded["csv"].read_bytes()


@pytest.mark.parametrize(
    ("target", "metric"),
    [("price", "r2"), ("district", "accuracy")],
    ids=["regression", "classification"],
)
def test_a_model_trains_on_parquet_as_on_the_same_csv(
    address: str, uploaded: dict[str, Path], target: str, metric: str
) -> None:
    with MLGateClient(address, timeout=120) as client:
        on_parquet = client.train("homes", target, estimator="random_forest", random_seed=3)
        on_csv = client.train("homes_csv", target, estimator="random_forest", random_seed=3)
        parquet_model = client.get_model(on_parquet.model_id)
    assert metric in on_parquet.metrics
    assert on_parquet.metrics == on_csv.metrics
    dtypes = {f.name: f.dtype for f in parquet_model.features}
    assert dtypes["garden"] == "boolean" and dtypes["rooms"] == "integer"
    assert (
        parquet_model.proto.dataset_sha256
        == hashlib.sha256(uploaded["parquet"].read_bytes()).hexdigest()
    )


def test_a_fake_or_nested_parquet_file_is_refused_naming_what(address: str, files: Path) -> None:
    fake = files / "fake.parquet"
    fake.write_bytes(b"rooms,price\n1,2\n")
    done = _mlgate(address, "datasets", "upload", str(fake), "--format", "parquet")
    assert done.returncode == 2
    assert "the upload says format parquet but the file is not Parquet" in done.stderr
    nested = files / "nested.parquet"
    pq.write_table(pa.table({"rooms": [1, 2], "tags": [["a"], ["b", "c"]]}), nested)
    done = _mlgate(address, "datasets", "upload", str(nested))
    assert done.returncode == 2
    assert "column 'tags' is a nested column (list<" in done.stderr
    with grpc.insecure_channel(address) as channel:
        first = datasets_pb2.UploadDatasetRequest(
            dataset_id="nested", chunk=nested.read_bytes(), format="parquet"
        )
        code, details = refused(lambda: datasets(channel).UploadDataset(iter([first])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'tags'" in details
    listed = _json(_mlgate(address, "--json", "datasets", "list"))
    assert not {"fake", "nested"} & {d["id"] for d in listed}


def test_a_builtin_dataset_downloads_as_its_csv_rendering(address: str, files: Path) -> None:
    target = files / "iris.csv"
    target.write_text("left as it was\n")
    done = _mlgate(address, "datasets", "download", "nope", "-o", str(target))
    assert done.returncode == 1 and "dataset 'nope' does not exist" in done.stderr
    assert target.read_text() == "left as it was\n"  # written whole or not at all
    got = _json(_mlgate(address, "--json", "datasets", "download", "iris", "-o", str(target)))
    assert got["dataset"]["format"] == "csv" and got["dataset"]["builtin"]
    assert hashlib.sha256(target.read_bytes()).hexdigest() == got["dataset"]["sha256"]
    expected = load_iris(as_frame=True).frame
    pd.testing.assert_frame_equal(pd.read_csv(target), expected, check_dtype=False)
    assert [p.name for p in files.iterdir() if p.name.endswith(".part")] == []


def test_the_datasets_walkthrough_runs_as_written(address: str, tmp_path: Path) -> None:
    source = script(ROOT / "docs" / "datasets.md", "datasets", {"localhost:50051": address})
    out = run_walkthrough(source, tmp_path, environment(tmp_path, MLGATE_ADDRESS=address)).stdout
    assert re.search(r"^format:\s+parquet$", out, re.M), out
    assert re.search(r"^district\s+string$", out, re.M), out
    assert re.search(r"^r2 -?[0-9.]+$", out, re.M), out
    assert "homes: the same bytes" in out
    assert "'district': CategoricalDtype(" in out
    digests = re.findall(r"^([0-9a-f]{64})\b", out, re.M)
    assert len(digests) == 2 and digests[0] == digests[1], out
