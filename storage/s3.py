"""The S3 object store: objects in one bucket under a key prefix, through one boto3 client
(made by ``storage.s3_client``).

``python -m storage.s3 create-bucket [s3://bucket/prefix]`` creates the bucket a deployment uses.
"""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

from boto3.s3.transfer import TransferConfig
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from s3transfer.exceptions import RetriesExceededError

from mlgate.urls import redact_url
from storage.base import ObjectStore, check_key
from storage.errors import (
    ObjectNotFound,
    StorageError,
    StorageMisconfigured,
    StorageUnavailable,
)
from storage.s3_client import ca_from_env, default_transfer, endpoint_from_env, make_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["S3ObjectStore"]

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*")
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden"}
_BUSY = {"SlowDown", "ServiceUnavailable", "RequestTimeout", "InternalError", "503", "500"}
_MIB = 1024 * 1024


class _FullReader:
    """Reads that return exactly what is asked unless the source ends, and count the bytes.

    boto3 turns each read of a non-seekable source into one multipart part; a pipe's short reads
    would make parts under S3's 5 MiB minimum.
    """

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self.size = 0

    def read(self, amount: int | None = -1) -> bytes:
        # boto3 reads "the rest" only after a short read, that is at the end of the source.
        whole = amount is None or amount < 0
        wanted = _MIB if amount is None or amount < 0 else amount
        pieces: list[bytes] = []
        while wanted > 0:
            piece = self._source.read(wanted)
            if not piece:
                break
            pieces.append(piece)
            if not whole:
                wanted -= len(piece)
        data = b"".join(pieces)
        self.size += len(data)
        return data


class _CountingWriter:
    """A write-only view of the target: boto3 then writes parts in order, and we count them."""

    def __init__(self, target: BinaryIO) -> None:
        self._target = target
        self.size = 0

    def write(self, data: bytes) -> int:
        self._target.write(data)
        self.size += len(data)
        return len(data)


class S3ObjectStore(ObjectStore):
    """Objects under ``prefix`` in ``bucket``. Thread-safe: the one client is shared by all calls.

    S3 makes every write atomic: a PUT or a completed multipart upload is seen whole or not at all.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str = "",
        *,
        transfer: TransferConfig | None = None,
        page_size: int = 1000,
    ) -> None:
        if not _BUCKET.fullmatch(bucket):
            raise ValueError(f"invalid S3 bucket name {bucket!r}")
        prefix = prefix.strip("/")
        if prefix and (not _PREFIX.fullmatch(prefix) or ".." in prefix.split("/")):
            raise ValueError(f"invalid S3 key prefix {prefix!r}")
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""
        self._client = client
        self._transfer = transfer or default_transfer()
        self._page_size = page_size
        self._where = redact_url(client.meta.endpoint_url)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        endpoint_url: str | None = None,
        transfer: TransferConfig | None = None,
    ) -> S3ObjectStore:
        """The store ``s3://bucket/prefix`` names; the endpoint defaults to the environment's."""
        parts = urlsplit(url)
        if parts.scheme != "s3":
            raise ValueError("an S3 storage URL looks like s3://bucket/prefix")
        if "@" in parts.netloc:
            # Say nothing of what followed: it may be a secret.
            raise ValueError(
                "credentials do not belong in an s3:// URL; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or use a profile or role)"
            )
        if parts.query or parts.fragment or parts.port is not None:
            raise ValueError("an S3 storage URL looks like s3://bucket/prefix")
        endpoint = endpoint_url or endpoint_from_env()
        store_transfer = transfer or default_transfer()
        client = make_client(
            endpoint,
            max_pool=max(10, store_transfer.max_request_concurrency),
            ca_file=ca_from_env(),
        )
        return cls(client, parts.netloc, parts.path, transfer=store_transfer)

    def __repr__(self) -> str:
        return f"S3ObjectStore(s3://{self.bucket}/{self.prefix} at {self._where})"

    def __reduce__(self) -> tuple[Any, ...]:
        # A worker's fit processes open the same store with a client of their own: a boto3 client
        # does not cross processes. Fixed credentials go along, session token included (the
        # fit processes' environment is the one their forkserver started with; botocore keeps
        # them on the request signer). Refreshable ones (a role) would be frozen to expire: the
        # child finds those by boto3's own chain, as the worker did.
        signer = getattr(self._client, "_request_signer", None)
        found = getattr(signer, "_credentials", None)
        credentials = None
        if found is not None and not isinstance(found, RefreshableCredentials):
            frozen = found.get_frozen_credentials()
            credentials = (frozen.access_key, frozen.secret_key, frozen.token)
        meta = self._client.meta
        return (
            _reopen,
            (self.bucket, self.prefix, meta.endpoint_url, meta.region_name, credentials),
        )

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    @contextmanager
    def _errors(self, key: str) -> Iterator[None]:
        """Translate boto3's errors into the storage error tree at this one boundary."""
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            if code in _NOT_FOUND:
                raise ObjectNotFound(key) from None
            if code == "NoSuchBucket":
                raise StorageMisconfigured(f"S3 bucket {self.bucket!r} does not exist") from None
            if code in _DENIED or status == 403:
                raise StorageMisconfigured(
                    f"S3 refused access to bucket {self.bucket!r} ({code}); "
                    "check the AWS credentials mlgate runs with"
                ) from None
            if code in _BUSY or status >= 500:
                raise StorageUnavailable(f"S3 is unavailable ({code})") from exc
            raise StorageError(f"S3 failed on {key!r}: {code} {error.get('Message', '')}") from exc
        except NoCredentialsError:
            raise StorageError(
                "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or use a profile or role)"
            ) from None
        except (BotoConnectionError, HTTPClientError, RetriesExceededError) as exc:
            # Messages reach callers (job errors, GetStatus): the endpoint stays in the log, which
            # shows it at start and in this error's cause.
            raise StorageUnavailable(f"S3 cannot be reached ({type(exc).__name__})") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 failed on {key!r}: {exc}") from exc

    def check(self) -> None:
        with self._errors(""):
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchBucket"}:
                    raise StorageMisconfigured(
                        f"S3 bucket {self.bucket!r} does not exist: create it "
                        "(`python -m storage.s3 create-bucket`) or fix MLGATE_STORAGE_URL"
                    ) from None
                raise

    def ensure_bucket(self) -> bool:
        """Create the bucket unless it exists; whether it was created. For deployments and tests:
        mlgate itself never creates buckets."""
        with self._errors(""):
            try:
                self._client.head_bucket(Bucket=self.bucket)
                return False
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket"}:
                    raise
            region = self._client.meta.region_name
            try:
                if region and region != "us-east-1":
                    self._client.create_bucket(
                        Bucket=self.bucket,
                        CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
                    )
                else:
                    self._client.create_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise
                return False
        return True

    def put(self, key: str, data: bytes) -> None:
        self.put_stream(key, io.BytesIO(data))

    def put_stream(self, key: str, source: BinaryIO) -> int:
        name = self._key(key)
        reader = _FullReader(source)
        with self._errors(key):
            self._client.upload_fileobj(reader, self.bucket, name, Config=self._transfer)  # type: ignore[arg-type]
        return reader.size

    def get(self, key: str) -> bytes:
        name = self._key(key)
        with self._errors(key):
            response = self._client.get_object(Bucket=self.bucket, Key=name)
            with response["Body"] as body:
                return body.read()

    def download(self, key: str, target: BinaryIO) -> int:
        name = self._key(key)
        writer = _CountingWriter(target)
        with self._errors(key):
            self._client.download_fileobj(self.bucket, name, writer, Config=self._transfer)  # type: ignore[arg-type]
        return writer.size

    def exists(self, key: str) -> bool:
        name = self._key(key)
        try:
            with self._errors(key):
                self._client.head_object(Bucket=self.bucket, Key=name)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        name = self._key(key)
        with self._errors(key):
            self._client.delete_object(Bucket=self.bucket, Key=name)

    def list(self, prefix: str) -> Iterator[str]:
        if prefix:
            check_key(prefix.removesuffix("/"))
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=self.prefix + prefix,
            PaginationConfig={"PageSize": self._page_size},
        )
        with self._errors(prefix):
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"].removeprefix(self.prefix)


def _reopen(
    bucket: str,
    prefix: str,
    endpoint_url: str,
    region: str | None,
    credentials: tuple[str, str, str | None] | None,
) -> S3ObjectStore:
    """The store an S3ObjectStore pickled as (see ``__reduce__``)."""
    client = make_client(
        endpoint_url, credentials=credentials, region=region, ca_file=ca_from_env()
    )
    return S3ObjectStore(client, bucket, prefix)


def main(argv: list[str]) -> int:
    """``python -m storage.s3 create-bucket [s3://bucket/prefix]``: create the bucket that the URL
    (default ``$MLGATE_STORAGE_URL``) names, with the endpoint and credentials of the environment."""
    url = argv[1] if len(argv) > 1 else os.environ.get("MLGATE_STORAGE_URL", "")
    if not argv or argv[0] != "create-bucket" or not url.startswith("s3://"):
        print(main.__doc__, file=sys.stderr)
        return 2
    store = S3ObjectStore.from_url(url)
    try:
        created = store.ensure_bucket()
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"bucket {store.bucket} {'created' if created else 'already exists'} at {store._where}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
