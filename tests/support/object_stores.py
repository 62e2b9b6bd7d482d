"""What the object store suites share: a factory of stores on one backend, and S3's part size."""

from __future__ import annotations

from collections.abc import Callable

from storage.base import ObjectStore

__all__ = ["PART_SIZE", "StoreFactory"]

#: Makes stores that all see the same fresh space on one backend, as several processes would.
StoreFactory = Callable[[], ObjectStore]

#: The smallest part S3 accepts; streams larger than this are uploaded in parts.
PART_SIZE = 5 * 1024 * 1024
