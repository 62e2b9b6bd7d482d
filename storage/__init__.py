"""Storage: the object store contract (``base``) with ``local`` and ``s3`` backends, and what mlgate
keeps in it: datasets (``datasets``) and model artifacts with their manifests (``models``).

``open_object_store`` is the one place a backend is chosen, from ``MLGATE_STORAGE_URL``.
"""

from __future__ import annotations

from storage.base import ObjectStore
from storage.errors import IntegrityError, ObjectNotFound, StorageError, StorageUnavailable

__all__ = [
    "IntegrityError",
    "ObjectNotFound",
    "ObjectStore",
    "StorageError",
    "StorageUnavailable",
    "describe_store",
    "open_object_store",
]


def describe_store(url: str) -> str:
    """The kind of object store a storage URL names, as messages name it (never its address)."""
    return "s3" if url.startswith("s3://") else "local directory"


def open_object_store(url: str) -> ObjectStore:
    """The object store a ``file://`` or ``s3://bucket/prefix`` URL names."""
    if url.startswith("file://"):
        from storage.local import LocalObjectStore

        return LocalObjectStore.from_url(url)
    if url.startswith("s3://"):
        from storage.s3 import S3ObjectStore

        return S3ObjectStore.from_url(url)
    raise ValueError(f"MLGATE_STORAGE_URL must start with file:// or s3://, not {url[:20]!r}")
