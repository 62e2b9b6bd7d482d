"""DownloadDataset on a gateway with tokens: an uploaded dataset's data is its owner's (and
admin's, and a +all token's), a built-in one is anyone's with the read role; unknown ids are
NOT_FOUND, bad ones INVALID_ARGUMENT; what arrives is checked against the record."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import pandas as pd
import pytest

from mlgate.v1 import datasets_pb2
from mlgate_client import DataLoss, MLGateClient, NotFound, PermissionDenied
from storage import open_object_store
from tests.support.authed import Authed, start_authed
from tests.support.gateway_calls import datasets, refused


@pytest.fixture(scope="module")
def authed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authed]:
    running = start_authed(tmp_path_factory.mktemp("authed"), embedded_workers=False)
    yield running
    running.gateway.stop()


def _client(authed: Authed, holder: str) -> MLGateClient:
    return MLGateClient(authed.address, timeout=60, token=authed.tokens[holder])


@pytest.fixture(scope="module")
def parquet(authed: Authed) -> bytes:
    """alice's Parquet dataset ``rooms``."""
    buffer = io.BytesIO()
    pd.DataFrame({"size": [1.5, 2.5, 3.5], "rooms": [1, 2, 3]}).to_parquet(buffer, index=False)
    with _client(authed, "alice") as alice:
        alice.upload_dataset("rooms", io.BytesIO(buffer.getvalue()))
    return buffer.getvalue()


@pytest.mark.parametrize("holder", ["alice", "ops", "auditor"])
def test_its_owner_admin_and_all_seeing_tokens_download_an_upload(
    authed: Authed, parquet: bytes, holder: str, tmp_path: Path
) -> None:
    with _client(authed, holder) as client:
        dataset = client.download_dataset("rooms", tmp_path / "rooms.parquet")
    assert (dataset.format, dataset.owner, dataset.rows) == ("parquet", "alice", 3)
    assert (tmp_path / "rooms.parquet").read_bytes() == parquet


@pytest.mark.parametrize("holder", ["bob", "reader"])
def test_other_tokens_are_denied_the_data_but_see_the_record(
    authed: Authed, parquet: bytes, holder: str, tmp_path: Path
) -> None:
    target = tmp_path / "rooms.parquet"
    with _client(authed, holder) as client:
        with pytest.raises(
            PermissionDenied,
            match=r"downloading dataset 'rooms' is for its owner, the admin role or a \+all "
            rf"token: it belongs to 'alice'; token '{holder}'",
        ):
            client.download_dataset("rooms", target)
        assert client.get_dataset("rooms").rows == 3
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_a_builtin_dataset_is_anyones_with_the_read_role(authed: Authed, tmp_path: Path) -> None:
    with _client(authed, "reader") as reader:
        dataset = reader.download_dataset("wine", tmp_path / "wine.csv")
    data = (tmp_path / "wine.csv").read_bytes()
    assert hashlib.sha256(data).hexdigest() == dataset.sha256 and dataset.builtin
    assert len(pd.read_csv(io.BytesIO(data))) == dataset.rows == 178


def test_unknown_and_bad_ids(authed: Authed) -> None:
    with _client(authed, "alice") as alice, pytest.raises(NotFound, match="'ghost' does not"):
        alice.download_dataset("ghost", io.BytesIO())
    metadata = (("authorization", f"Bearer {authed.tokens['alice']}"),)
    with grpc.insecure_channel(authed.address) as channel:
        request = datasets_pb2.DownloadDatasetRequest(dataset_id="../etc")
        code, details = refused(
            lambda: list(datasets(channel).DownloadDataset(request, metadata=metadata))
        )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "dataset_id" in details


def test_stored_bytes_that_do_not_match_the_record_are_not_sent(
    authed: Authed, tmp_path: Path
) -> None:
    with _client(authed, "alice") as alice:
        alice.upload_dataset("tampered", io.BytesIO(b"size,rooms\n1.5,1\n2.5,2\n"))
        store = open_object_store(authed.gateway.settings.storage_url)
        store.put("datasets/tampered.csv", b"size,rooms\n1.5,1\n9.5,2\n")
        with pytest.raises(DataLoss, match="does not match the sha256 its record holds"):
            alice.download_dataset("tampered", tmp_path / "tampered.csv")
    assert list(tmp_path.iterdir()) == []
