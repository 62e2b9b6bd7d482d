"""A dataset belongs to the token that uploaded it: everyone with the read role sees it whole (any
trainer may train on it), only its owner or admin replaces or deletes it, checked where the
upload is stored, so an upload opened before the dataset existed cannot replace it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest

from mlgate.v1 import datasets_pb2
from mlgate_client import MLGateClient, PermissionDenied
from tests.support.authed import Authed
from tests.support.gateway_calls import datasets
from tests.support.samples import HOUSES_CSV

# Larger than the HTTP/2 window a stream gets before its server asks for the next message: the
# client's write of it completes only once the gateway has taken the first message in.
_PAST_THE_WINDOW = 24 * 2**20


def _client(authed: Authed, holder: str) -> MLGateClient:
    return MLGateClient(authed.address, timeout=60, token=authed.tokens[holder])


def _upload(authed: Authed, holder: str, text: str, *, replace: bool = False) -> None:
    with _client(authed, holder) as client:
        client.upload_dataset("houses", _file(authed, holder, text), replace=replace)


def _file(authed: Authed, holder: str, text: str) -> str:
    path = authed.tokens_file.parent / f"{holder}.csv"
    path.write_text(text)
    return str(path)


def test_only_its_owner_or_admin_replaces_or_deletes_a_dataset(authed: Authed) -> None:
    _upload(authed, "alice", HOUSES_CSV)
    for holder in ("reader", "bob"):
        with _client(authed, holder) as other:
            seen = other.get_dataset("houses")
            assert (seen.owner, seen.rows, len(seen.columns)) == ("alice", 12, 3)
            assert {d.id: d.owner for d in other.list_datasets()}["houses"] == "alice"
    with pytest.raises(
        PermissionDenied,
        match=r"replacing dataset 'houses' is for its owner or the admin role: it belongs to "
        r"'alice'; token 'bob' has train",
    ):
        _upload(authed, "bob", "size,price\n1,2\n", replace=True)
    with (
        _client(authed, "bob") as bob,
        pytest.raises(PermissionDenied, match=r"deleting dataset 'houses' .* 'alice'"),
    ):
        bob.delete_dataset("houses")

    _upload(authed, "alice", "size,price\n1,2\n3,4\n", replace=True)
    with _client(authed, "ops") as ops:
        assert ops.get_dataset("houses").rows == 2
        ops.delete_dataset("houses")
    _upload(authed, "bob", HOUSES_CSV)
    with _client(authed, "bob") as bob:
        bob.delete_dataset("houses")


def test_a_replace_opened_before_the_dataset_existed_is_checked_when_it_commits(
    authed: Authed,
) -> None:
    first_taken_in = threading.Event()
    alice_uploaded = threading.Event()
    big_row = "9," + "x" * 1000 + "\n"

    def bobs_upload() -> Iterator[datasets_pb2.UploadDatasetRequest]:
        # Nothing is called houses yet: the first message passes the check made on it.
        yield datasets_pb2.UploadDatasetRequest(
            dataset_id="houses", replace=True, chunk=b"size,note\n"
        )
        yield datasets_pb2.UploadDatasetRequest(
            chunk=(big_row * (_PAST_THE_WINDOW // len(big_row))).encode()
        )
        first_taken_in.set()
        alice_uploaded.wait(60)

    outcome: list[grpc.RpcError | datasets_pb2.UploadDatasetResponse] = []

    def bob() -> None:
        token = (("authorization", f"Bearer {authed.tokens['bob']}"),)
        with grpc.insecure_channel(authed.address) as channel:
            try:
                outcome.append(
                    datasets(channel).UploadDataset(bobs_upload(), metadata=token, timeout=120)
                )
            except grpc.RpcError as error:
                outcome.append(error)

    racer = threading.Thread(target=bob)
    racer.start()
    assert first_taken_in.wait(60), "the gateway never took bob's first message in"
    _upload(authed, "alice", HOUSES_CSV)
    alice_uploaded.set()
    racer.join(120)

    (refused,) = outcome
    assert isinstance(refused, grpc.RpcError), "bob replaced alice's dataset"
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "replacing dataset 'houses' is for its owner" in (refused.details() or "")
    with _client(authed, "reader") as reader:
        kept = reader.get_dataset("houses")
    assert (kept.owner, kept.rows) == ("alice", 12)
