"""The storage error tree.

StorageError
├── ObjectNotFound     no object under that key
├── IntegrityError     an artifact does not match its manifest (digest, missing manifest)
├── StorageUnavailable the backing store cannot be reached
└── StorageMisconfigured the store is reachable but not usable as configured (a missing bucket)
"""

from __future__ import annotations

__all__ = [
    "IntegrityError",
    "ObjectNotFound",
    "StorageError",
    "StorageMisconfigured",
    "StorageUnavailable",
]


class StorageError(Exception):
    """Root of the storage errors."""


class ObjectNotFound(StorageError):
    """No object is stored under the key."""


class IntegrityError(StorageError):
    """Stored bytes do not match what their manifest says."""


class StorageUnavailable(StorageError):
    """The backing store cannot be reached now."""


class StorageMisconfigured(StorageError):
    """The store answers but cannot be used as configured (a missing bucket): an operator's fix."""
