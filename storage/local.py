"""The local-directory object store: the default, under the data directory."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from storage.base import ObjectStore, check_key
from storage.errors import ObjectNotFound, StorageUnavailable

__all__ = ["LocalObjectStore"]

_CHUNK = 1024 * 1024


class LocalObjectStore(ObjectStore):
    """Objects as files under ``root``; writes go to a temporary file renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_url(cls, url: str) -> LocalObjectStore:
        return cls(Path(unquote(urlsplit(url).path)))

    def check(self) -> None:
        if not (self.root.is_dir() and os.access(self.root, os.W_OK | os.X_OK)):
            raise StorageUnavailable("local storage: the data directory is missing or not writable")

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"invalid storage key {key!r}")
        return path

    def _write(self, key: str, fill: BinaryIO | bytes) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(fill, bytes):
                    out.write(fill)
                else:
                    shutil.copyfileobj(fill, out, _CHUNK)
                out.flush()
                os.fsync(out.fileno())
                size = out.tell()
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size

    def put(self, key: str, data: bytes) -> None:
        self._write(key, data)

    def put_stream(self, key: str, source: BinaryIO) -> int:
        return self._write(key, source)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def download(self, key: str, target: BinaryIO) -> int:
        try:
            with self._path(key).open("rb") as source:
                shutil.copyfileobj(source, target, _CHUNK)
                return source.tell()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix if prefix else self.root
        folder = base if prefix.endswith("/") or not prefix else base.parent
        if not folder.is_dir():
            return
        for path in folder.rglob("*"):
            if path.is_file() and not path.name.startswith(".tmp-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key
