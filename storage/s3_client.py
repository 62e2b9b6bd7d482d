"""How mlgate connects to S3: the endpoint and CA the environment names, the boto3 client, and
the transfer settings of uploads and downloads.

Credentials come from boto3's standard chain (environment, shared files, instance roles) and are
never part of the URL or of any message. An S3-compatible server (SeaweedFS, MinIO) is named by
``MLGATE_S3_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL`` and is addressed path-style, since such servers
rarely resolve bucket subdomains.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from mlgate.urls import check_url

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["ca_from_env", "default_transfer", "endpoint_from_env", "make_client"]

_MIB = 1024 * 1024


def default_transfer(part_size: int = 8 * _MIB) -> TransferConfig:
    """Multipart above ``part_size`` in parts of that size, four at a time.

    The in-memory limits bound what one transfer of a stream buffers to a few parts.
    """
    config = TransferConfig(
        multipart_threshold=part_size,
        multipart_chunksize=part_size,
        max_concurrency=4,
        preferred_transfer_client="classic",
    )
    # s3transfer's own knobs, which boto3's constructor does not take.
    config.max_in_memory_upload_chunks = 6
    config.max_in_memory_download_chunks = max(16, 6 * part_size // config.io_chunksize)
    return config


def endpoint_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """The S3-compatible endpoint the environment names, if any; mlgate's own variable wins.

    ``ValueError`` (one line, naming the variable) for a malformed endpoint or one that carries
    credentials: botocore would repeat it whole in its errors.
    """
    env = os.environ if env is None else env
    for name in ("MLGATE_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if env.get(name):
            url = check_url(name, env[name], ("http", "https"))
            parts = urlsplit(url)
            if "@" in parts.netloc or parts.query:
                raise ValueError(
                    f"{name} must be just https://host[:port]: credentials do not belong in it "
                    "(set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use a profile or role)"
                )
            return url
    return None


def ca_from_env(env: Mapping[str, str] | None = None) -> str | None:
    """The CA bundle ``MLGATE_S3_CA`` names for an https:// endpoint; None: the system's, or
    botocore's own ``AWS_CA_BUNDLE``."""
    env = os.environ if env is None else env
    return env.get("MLGATE_S3_CA") or None


def make_client(
    endpoint_url: str | None,
    *,
    credentials: tuple[str, str] | tuple[str, str, str | None] | None = None,
    region: str | None = None,
    max_pool: int = 10,
    ca_file: str | None = None,
) -> S3Client:
    """A boto3 S3 client: path-style addressing and conservative checksums for custom endpoints.

    Without ``credentials`` (key id, secret and optionally a session token) boto3's standard chain finds them; ``ca_file``
    is the CA bundle trusted for an https:// endpoint.
    """
    options: dict[str, object] = {
        "retries": {"mode": "standard", "max_attempts": 4},
        "connect_timeout": 5,
        "read_timeout": 60,
        "max_pool_connections": max_pool,
    }
    if endpoint_url:
        options["s3"] = {"addressing_style": "path"}
        # Flexible checksums (boto3's default since 1.36) are not understood by every
        # S3-compatible server; send them only where the API requires them.
        options["request_checksum_calculation"] = "when_required"
        options["response_checksum_validation"] = "when_required"
    # A fresh session per client: boto3's default session is shared module state, not thread-safe.
    key_id = secret = token = None
    if credentials is not None:
        key_id, secret = credentials[0], credentials[1]
        token = credentials[2] if len(credentials) == 3 else None
    session = boto3.session.Session(
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
        region_name=region,
    )
    config = Config(**options)  # type: ignore[arg-type]
    return session.client("s3", endpoint_url=endpoint_url, config=config, verify=ca_file)
