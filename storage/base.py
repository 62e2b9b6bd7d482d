"""The object store contract: bytes under keys that only mlgate's code composes.

Keys are relative, slash-separated and drawn from a small alphabet; ``check_key`` refuses anything
else, so an id that slipped past validation still cannot address a path outside the store.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterator, Sequence
from typing import BinaryIO

__all__ = ["ObjectStore", "check_key"]

_KEY = re.compile(r"[a-z0-9_-][a-z0-9_.-]*(/[a-z0-9_-][a-z0-9_.-]*)*")


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key) or ".." in key:
        raise ValueError(f"invalid storage key {key!r}")
    return key


class ObjectStore(abc.ABC):
    """Blocking, thread-safe object storage. Writes are atomic: a reader sees the whole
    object or none of it."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing what was there."""

    def put_in_order(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store each ``(key, data)`` as ``put`` does, each visible only once those before it
        are stored: neither a reader nor a crash finds one without the ones listed before it. A
        store may write them all before making them visible, in order."""
        for key, data in items:
            self.put(key, data)

    @abc.abstractmethod
    def put_stream(self, key: str, source: BinaryIO) -> int:
        """Store what ``source`` reads to its end, without holding it all in memory; the size."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; raises ``ObjectNotFound``."""

    @abc.abstractmethod
    def download(self, key: str, target: BinaryIO) -> int:
        """Write the object into ``target`` in pieces; the size. Raises ``ObjectNotFound``."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object if there is one."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """The keys that start with ``prefix`` (a folder ending in '/'), in no set order."""

    @abc.abstractmethod
    def check(self) -> None:
        """Whether the store is usable now: raises ``StorageUnavailable`` if it cannot be reached,
        ``StorageMisconfigured`` if it is not set up as configured (for health and status)."""
